#!/bin/sh
# vfio-binding-persistent: bind a PCI function to vfio-pci at every boot, by its address.
# With driverctl and its boot-time udev rule and unit in place: driverctl set-override ADDRESS
# vfio-pci. Without driverctl, or with its rule or unit missing or masked (then it would apply
# nothing at boot; the mask is left alone): the same /etc/driverctl.d/pci-ADDRESS file plus a
# udev rule doing what driverctl's rule does (set driver_override, rebind). Both live in /etc,
# so kernel and initramfs updates keep them; never vfio-pci.ids, which would also take every
# other drive of the same model.
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

# masked NAME: why the file udev/systemd use for NAME (the first of these directories holding it)
# does nothing, as the audit reads it (parsers/modules.py Binder); nothing when it is in place.
masked() {
	for d in etc run usr/local/lib usr/lib lib; do
		f=$R/$d/$1
		[ -e "$f" ] || [ -L "$f" ] || continue
		case $(readlink "$f") in */dev/null) echo "/$d/$1 masks it (a link to /dev/null)"; return ;; esac
		grep -q '^[^#]*driverctl' "$f" 2>/dev/null || echo "/$d/$1 masks it (no uncommented line naming driverctl)"
		return
	done
	echo "${1##*/} is in none of /etc, /run, /usr/local/lib, /usr/lib, /lib"
}
# Why driverctl cannot bind the device at every boot here (nothing: it can).
driverctl_unusable() {
	command -v driverctl >/dev/null 2>&1 || { echo "driverctl is not installed"; return; }
	rule=$(masked udev/rules.d/05-driverctl.rules) unit=$(masked systemd/system/driverctl@.service)
	why=$rule${rule:+${unit:+; }}$unit
	[ -z "$why" ] || { echo "driverctl applies nothing at boot: $why"; return; }
	[ -z "$R" ] || echo "IOMMU_AUDIT_ROOT is set (driverctl writes to / only)"
}

[ $# -eq 1 ] || { usage >&2; exit 2; }
a=$1
valid_address "$a"
why=$(driverctl_unusable)
if [ -z "$why" ]; then
	if [ "$(cat "/etc/driverctl.d/pci-$a" 2>/dev/null)" = vfio-pci ]; then finish "nothing to do: driverctl override exists"; fi
	record "driverctl $a"
	run driverctl set-override "$a" vfio-pci
else
	mine=$(masked udev/rules.d/89-iommu-audit-vfio.rules)
	case $mine in /etc/*) die 3 "refused: $why, and $mine: nothing would apply /etc/driverctl.d/pci-$a at boot; remove one of the masks, then run again" ;; esac
	say "$why: /etc/driverctl.d/pci-$a, applied at boot by $RULE"
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
