#!/usr/bin/env bash
# Install everything the tests need (QEMU, libvirt, Python packages) and run them:
# unit tests on real-host-shaped data, then real kernels in QEMU guests and a real libvirtd.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh --tests
exec .venv/bin/python -m pytest tests -ra "$@"
