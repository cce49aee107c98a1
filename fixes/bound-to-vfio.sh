#!/bin/sh
# bound-to-vfio: bind PCI functions to vfio-pci now, by address only (never by model).
# For each address: load vfio-pci, set driver_override, unbind from the current driver,
# drivers_probe, then verify the driver is vfio-pci (the sequence driverctl uses).
# Give every endpoint of one IOMMU group that goes to the same VM in one call.
# Not persistent: see vfio-binding-persistent.sh.
usage() {
	cat <<'U'
usage: bound-to-vfio.sh [--dry-run] [--step-dir DIR] ADDRESS...
       bound-to-vfio.sh --undo --step-dir DIR     (give the devices back to their drivers)
exit: 0 done or nothing to do, 1 failed, 2 usage error, 3 refused
U
}
[ -n "${IOMMU_AUDIT_LIB:-}" ] || . "$(dirname "$0")/lib.sh"
while common_option "$@"; do shift $SHIFT; done
start_step bound-to-vfio

if [ "$UNDO" = 1 ]; then
	records_reversed | while read -r kind addr driver override; do
		[ "$kind" = bound ] || continue
		[ "$override" = - ] && override=
		say "give $addr back to ${driver} (driver_override '${override}')"
		rebind "$addr" "$override"
		now=$(driver_of "$addr")
		[ "$driver" = none ] || [ "$now" = "$driver" ] || die 1 "$addr is on $now after undo, expected $driver"
	done || exit 1
	finish undone
fi

[ $# -ge 1 ] || { usage >&2; exit 2; }
for a in "$@"; do
	valid_address "$a"
	[ -e "$(pci_dir "$a")" ] || die 3 "no PCI device $a on this host"
	used=$(host_use "$a")
	[ -z "$used" ] || die 3 "refused: $a is used by the host: $(echo $used)"
done
[ -e /sys/bus/pci/drivers/vfio-pci ] || run modprobe vfio-pci
for a in "$@"; do
	was=$(driver_of "$a")
	if [ "$was" = vfio-pci ]; then say "$a is on vfio-pci already"; continue; fi
	override=$(override_of "$a")
	record "bound $a $was ${override:--}"
	say "bind $a: $was -> vfio-pci"
	rebind "$a" vfio-pci
	[ "$DRY" = 1 ] || [ "$(driver_of "$a")" = vfio-pci ] || die 1 "$a is on $(driver_of "$a") after the rebind, not vfio-pci"
done
finish done
