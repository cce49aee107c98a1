#!/usr/bin/env bash
# Install everything the tests need (QEMU, libvirt, Python packages) and run them: first the
# tests that need no QEMU (unit, hostile inputs: fast feedback), then real kernels in QEMU
# guests and a real libvirtd. With arguments, one pytest run with them instead.
set -uo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh --tests || exit 1
if [ $# -gt 0 ]; then
	exec .venv/bin/python -m pytest "$@"
fi
# Two workers: most of these tests run the audit in a subprocess, so both cores stay busy.
.venv/bin/python -m pytest tests --ignore=tests/e2e -ra -n 2
first=$?
# Each guest is a single-core QEMU (TCG without KVM), so two workers: each runs a whole file (or files
# sharing a guest) at a time, slowest first (tests/e2e/conftest.py).
.venv/bin/python -m pytest tests/e2e -ra --durations=12 -n 2
second=$?
[ "$first" -eq 0 ] && [ "$second" -eq 0 ]
