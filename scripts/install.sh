#!/usr/bin/env bash
# Install iommu-audit into ./.venv (Debian/Ubuntu; run from anywhere).
#   bash scripts/install.sh          the audit: Python, pytest, testinfra, pytest-html, PyYAML
#   bash scripts/install.sh --tests  also what the tests need (QEMU, libvirt, ...; chromium for the report)
# Then `. .venv/bin/activate` puts pytest (with the audit plugin) and iommu-audit on your PATH.
set -euo pipefail
cd "$(dirname "$0")/.."
export DEBIAN_FRONTEND=noninteractive

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

apt_updated=
apt_install() {
	[ -n "$apt_updated" ] || { as_root apt-get update -qq; apt_updated=1; }
	as_root apt-get install -y -qq --no-install-recommends "$@"
}

# A Python with venv (Debian's python3 refuses pip installs outside a venv).
if ! python3 -m venv --help >/dev/null 2>&1 || ! python3 -c 'import ensurepip' >/dev/null 2>&1; then
	apt_install python3 python3-venv python3-pip
fi
if [ ! -x .venv/bin/python ]; then
	python3 -m venv .venv
fi
# The project is installed editable: only a change to pyproject.toml (dependencies, entry
# points) needs pip again, so a re-run skips it.
stamp=.venv/.iommu-audit-installed
wanted=$(sha256sum pyproject.toml | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$wanted" ] || ! .venv/bin/python -c 'import iommu_audit.plugin' 2>/dev/null; then
	.venv/bin/python -m pip install -q --upgrade pip >/dev/null
	.venv/bin/python -m pip install -q -e .
	echo "$wanted" >"$stamp"
fi

if [ "${1:-}" = "--tests" ]; then
	apt_updated=1
	as_root apt-get update -qq
	as_root sh tests/e2e/harness/install.sh
	# The report tests render reports in a real headless browser and check its PDF.
	as_root apt-get install -y -qq --no-install-recommends chromium poppler-utils fonts-dejavu-core
fi
