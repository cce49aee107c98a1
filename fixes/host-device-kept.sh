#!/bin/sh
# host-device-kept: give a device the profile keeps on the host back to the host: drop its
# driverctl override, clear driver_override, unbind it from vfio-pci/pci-stub, drivers_probe,
# and verify it is on a host driver again. VM definitions are not touched here (see
# assigned-to-vm.sh --detach; --fix does that only with --fix-detach).
usage() {
	cat <<'U'
usage: host-device-kept.sh [--dry-run] [--step-dir DIR] ADDRESS
       host-device-kept.sh --undo --step-dir DIR
exit: 0 done or nothing to do, 1 failed, 2 usage error, 3 refused
U
}
[ -n "${IOMMU_AUDIT_LIB:-}" ] || . "$(dirname "$0")/lib.sh"
while common_option "$@"; do shift $SHIFT; done
start_step host-device-kept

if [ "$UNDO" = 1 ]; then
	records_reversed | while read -r kind a driver override; do
		case $kind in
		file) restore_file "$a" ;;
		driverctl) run driverctl set-override "$a" "$driver" ;;
		released) [ "$override" = - ] && override=; rebind "$a" "$override"
			[ "$DRY" = 1 ] || [ "$(driver_of "$a")" = "$driver" ] || die 1 "$a is on $(driver_of "$a") after undo, expected $driver" ;;
		esac
	done || exit 1
	finish undone
fi

[ $# -eq 1 ] || { usage >&2; exit 2; }
a=$1
valid_address "$a"
[ -e "$(pci_dir "$a")" ] || die 3 "no PCI device $a on this host"
if [ "$(driver_of "$a")" = vfio-pci ]; then # unbinding a device a VM holds open blocks until the VM lets go
	g=$(basename "$(readlink "$(pci_dir "$a")/iommu_group")")
	users=$(for f in /proc/[0-9]*/fd/*; do [ "$(readlink "$f" 2>/dev/null)" = "/dev/vfio/$g" ] && p=${f#/proc/} && echo "${p%%/*} ($(cat "/proc/${p%%/*}/comm" 2>/dev/null))"; done | sort -u)
	[ -z "$users" ] || die 3 "refused: $a is in use: /dev/vfio/$g is open by pid $(echo $users) (a running VM?): stop it first"
fi
saved=$(cat "$R/etc/driverctl.d/pci-$a" 2>/dev/null)
if [ -n "$saved" ] && command -v driverctl >/dev/null 2>&1 && [ -z "$R" ]; then
	record "driverctl $a $saved"
	run driverctl unset-override "$a"
elif [ -n "$saved" ]; then
	backup "/etc/driverctl.d/pci-$a"
	say "remove /etc/driverctl.d/pci-$a"
	[ "$DRY" = 1 ] || rm -f "$R/etc/driverctl.d/pci-$a" || die 1 "cannot remove /etc/driverctl.d/pci-$a"
fi
was=$(driver_of "$a")
override=$(override_of "$a")
if [ "$was" = vfio-pci ] || [ "$was" = pci-stub ] || [ -n "$override" ]; then
	record "released $a $was ${override:--}"
	say "release $a from $was"
	rebind "$a" ""
fi
now=$(driver_of "$a")
[ "$DRY" = 1 ] || { [ "$now" != vfio-pci ] && [ "$now" != pci-stub ]; } || die 1 "$a is still on $now"
[ "$DRY" = 1 ] || [ "$now" != none ] || say "note: no host driver took $a (is its module loaded?)"
finish done
