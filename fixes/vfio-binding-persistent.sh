#!/bin/sh
# vfio-binding-persistent: bind a PCI function to vfio-pci at every boot, by its address.
# With driverctl installed: driverctl set-override ADDRESS vfio-pci. Without it: the same
# /etc/driverctl.d/pci-ADDRESS file plus a udev rule doing what driverctl's rule does (set
# driver_override, rebind). Both live in /etc, so kernel and initramfs updates keep them;
# never vfio-pci.ids, which would also take every other drive of the same model.
usage() {
	cat <<'U'
usage: vfio-binding-persistent.sh [--dry-run] [--step-dir DIR] ADDRESS
       vfio-binding-persistent.sh --undo --step-dir DIR
exit: 0 done or nothing to do, 1 failed, 2 usage error, 3 refused
U
}
[ -n "${IOMMU_AUDIT_LIB:-}" ] || . "$(dirname "$0")/lib.sh"
while common_option "$@"; do shift $SHIFT; done
start_step vfio-binding-persistent
RULE=/etc/udev/rules.d/89-iommu-audit-vfio.rules

if [ "$UNDO" = 1 ]; then
	records_reversed | while read -r kind a rest; do
		case $kind in
		driverctl) run driverctl unset-override "$a" ;;
		file) restore_file "$a" ;;
		esac
	done || exit 1
	finish undone
fi

[ $# -eq 1 ] || { usage >&2; exit 2; }
a=$1
valid_address "$a"
if command -v driverctl >/dev/null 2>&1 && [ -z "$R" ]; then
	if [ "$(cat "/etc/driverctl.d/pci-$a" 2>/dev/null)" = vfio-pci ]; then finish "nothing to do: driverctl override exists"; fi
	record "driverctl $a"
	run driverctl set-override "$a" vfio-pci
else
	say "driverctl is not installed: /etc/driverctl.d/pci-$a and $RULE"
	if [ "$(cat "$R/etc/driverctl.d/pci-$a" 2>/dev/null)" != vfio-pci ]; then
		put_file "/etc/driverctl.d/pci-$a" "$(sha "$R/etc/driverctl.d/pci-$a")" "$(printf 'vfio-pci\n' | base64)"
	fi
	rule='# iommu-audit: at boot, bind each PCI function listed in /etc/driverctl.d (pci-<address> holding
# "vfio-pci") to vfio-pci, as driverctl'"'"'s own udev rule does; for hosts without driverctl.
ACTION=="add", SUBSYSTEM=="pci", TEST=="/etc/driverctl.d/pci-$kernel", PROGRAM="/bin/cat /etc/driverctl.d/pci-$kernel", RESULT=="vfio-pci", ATTR{driver_override}="vfio-pci", RUN+="/bin/sh -c '"'"'modprobe -q vfio-pci; d=/sys/bus/pci/devices/$kernel; [ -e $$d/driver ] && echo $kernel > $$d/driver/unbind; echo $kernel > /sys/bus/pci/drivers_probe'"'"'"'
	if [ "$(cat "$R$RULE" 2>/dev/null)" != "$rule" ]; then
		put_file "$RULE" "$(sha "$R$RULE")" "$(printf '%s\n' "$rule" | base64)"
		[ -n "$R" ] || ! command -v udevadm >/dev/null 2>&1 || run udevadm control --reload
	fi
fi
[ "$DRY" = 1 ] || [ "$(cat "$R/etc/driverctl.d/pci-$a" 2>/dev/null)" = vfio-pci ] || die 1 "/etc/driverctl.d/pci-$a does not say vfio-pci"
finish done
