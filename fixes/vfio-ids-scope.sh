#!/bin/sh
# vfio-ids-scope: drop the model-wide ids= from 'options vfio-pci' in modprobe.d (the
# rewritten files come from --fix's plan, which binds the profiled devices per address
# instead). The initramfs holds a copy of modprobe.d: --fix rebuilds it in the next step
# (initramfs.sh); by hand, run initramfs.sh after this script.
# vfio-pci.ids on the kernel command line is removed by cmdline-persistent.sh.
usage() {
	cat <<'U'
usage: vfio-ids-scope.sh [--dry-run] [--step-dir DIR] --file PATH --sha256 SHA256-NOW --content BASE64 ...
       vfio-ids-scope.sh --undo --step-dir DIR
exit: 0 done, 1 failed, 2 usage error, 3 refused (a file changed since the plan)
U
}
[ -n "${IOMMU_AUDIT_LIB:-}" ] || . "$(dirname "$0")/lib.sh"
while common_option "$@"; do shift $SHIFT; done
start_step vfio-ids-scope
if [ "$UNDO" = 1 ]; then
	records_reversed | while read -r kind what; do [ "$kind" = file ] && restore_file "$what"; done || exit 1
	finish undone
fi
[ $# -ge 6 ] || { usage >&2; exit 2; }
while [ $# -gt 0 ]; do
	[ "$1" = --file ] && [ "$3" = --sha256 ] && [ "$5" = --content ] || { usage >&2; exit 2; }
	case $2 in /etc/modprobe.d/*.conf | /lib/modprobe.d/*.conf | /usr/lib/modprobe.d/*.conf) ;; *) die 2 "will not write $2" ;; esac
	put_file "$2" "$4" "$6"
	shift 6
done
finish "done (reboot required)"
