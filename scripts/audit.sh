#!/usr/bin/env bash
# Install iommu-audit and run the go-live audit.
#   bash scripts/audit.sh [pytest options...]
# On a host with an active IOMMU it audits this host against $PROFILE (default
# dl360-gen9); elsewhere it audits the bundled sample host, so the report is real.
# The HTML report goes to reports/.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
profile=${PROFILE:-dl360-gen9}
if [ -n "$(ls -A /sys/class/iommu 2>/dev/null)" ]; then
	where=(); name=$(hostname)
	echo "iommu-audit: auditing this host with profile $profile"
else
	where=(--sysroot=samples/dl360-gen9-01); name=dl360-gen9-01
	echo "iommu-audit: this machine has no active IOMMU; auditing the bundled sample host samples/dl360-gen9-01"
fi
exec .venv/bin/python -m pytest --profile "$profile" "${where[@]}" \
	--html="reports/$name.html" --self-contained-html -rfE "$@"
