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
.venv/bin/python -m pytest tests/e2e -ra --durations=12
second=$?
[ "$first" -eq 0 ] && [ "$second" -eq 0 ]
