#!/usr/bin/env bash
# Install iommu-audit (into ./.venv) and run the go-live audit; the exit code is the audit's.
#   bash scripts/audit.sh                                 this host, profile $PROFILE (default dl360-gen9)
#   bash scripts/audit.sh --hosts ssh://root@node1        any audit: the arguments go to pytest as they are
#   bash scripts/audit.sh --profile my.yaml --sysroot /srv/copy
# The HTML report goes to reports/. Auditing this host without an active IOMMU (a laptop, a
# CI box), the bundled sample host follows as a comparison; the last line is always the verdict.
set -uo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh || exit 1
audited="this host ($(hostname))" report=reports/$(hostname).html
for arg in "$@"; do
	case $arg in --hosts* | --sysroot* | --facts*) audited="the hosts given" report=reports/audit.html ;; esac
done
no_iommu=
if [ "$audited" != "the hosts given" ] && [ -z "$(ls -A /sys/class/iommu 2>/dev/null)" ]; then
	no_iommu=yes
fi
profile=()
case " $* " in *" --profile"*) ;; *) profile=(--profile "${PROFILE:-dl360-gen9}") ;; esac
echo "iommu-audit: auditing $audited"
.venv/bin/python -m pytest "${profile[@]}" "$@" --html="$report" --self-contained-html -rfEs
rc=$?
if [ -n "$no_iommu" ]; then
	echo
	echo "iommu-audit: for comparison, the bundled sample host samples/dl360-gen9-01 as it should be at go-live:"
	.venv/bin/python -m pytest --profile dl360-gen9 --sysroot samples/dl360-gen9-01 \
		--html=reports/sample-dl360-gen9-01.html --self-contained-html -q
	echo
fi
case $rc in
0) verdict="READY: every required check passed" ;;
1) verdict="NOT READY: required checks failed or could not be checked (listed above)${no_iommu:+; it has no active IOMMU}" ;;
4) verdict="not audited: usage error (above)" ;;
*) verdict="not audited: pytest stopped with exit code $rc (above)" ;;
esac
echo "iommu-audit: verdict for $audited: $verdict; report: $report (exit code $rc)"
exit "$rc"
