#!/usr/bin/env bash
# Install iommu-audit (into ./.venv) and run the go-live audit of this host against
# $PROFILE (default dl360-gen9); the HTML report goes to reports/<host>.html.
#   bash scripts/audit.sh [pytest options...]
# A host without an active IOMMU is audited all the same (it fails, as it should);
# then the bundled sample host is audited too, so a newcomer sees a complete report.
# The exit code is always this host's.
set -uo pipefail
cd "$(dirname "$0")/.."
for arg in "$@"; do
	case $arg in
	--hosts* | --sysroot* | --facts*)
		echo "scripts/audit.sh audits this host; for $arg run .venv/bin/python -m pytest --profile ... $arg" >&2
		exit 4 ;;
	esac
done
bash scripts/install.sh || exit 1
profile=${PROFILE:-dl360-gen9}
host=$(hostname)
echo "iommu-audit: auditing this host ($host) with profile $profile"
.venv/bin/python -m pytest --profile "$profile" --html="reports/$host.html" --self-contained-html -rfE "$@"
rc=$?
if [ -z "$(ls -A /sys/class/iommu 2>/dev/null)" ]; then
	echo
	echo "iommu-audit: $host has no active IOMMU, so it is not ready (exit code $rc above)."
	echo "iommu-audit: for comparison, the bundled sample host samples/dl360-gen9-01 as it should be at go-live:"
	.venv/bin/python -m pytest --profile dl360-gen9 --sysroot=samples/dl360-gen9-01 \
		--html=reports/sample-dl360-gen9-01.html --self-contained-html -q
fi
exit "$rc"
