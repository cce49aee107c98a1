#!/bin/sh
# vfio-modules: load vfio-pci (which pulls in vfio and vfio_iommu_type1) now, and list the
# three modules in /etc/modules-load.d/vfio-pci.conf so systemd loads them at every boot.
usage() {
	cat <<'U'
usage: vfio-modules.sh [--dry-run] [--step-dir DIR]
       vfio-modules.sh --undo --step-dir DIR
exit: 0 done or nothing to do, 1 failed, 2 usage error
U
}
[ -n "${IOMMU_AUDIT_LIB:-}" ] || . "$(dirname "$0")/lib.sh"
while common_option "$@"; do shift $SHIFT; done
start_step vfio-modules
CONF=/etc/modules-load.d/vfio-pci.conf
WANT='# iommu-audit --fix: VFIO for PCI passthrough
vfio
vfio_iommu_type1
vfio-pci'

if [ "$UNDO" = 1 ]; then
	records_reversed | while read -r kind what; do
		case $kind in
		file) restore_file "$what" ;;
		loaded) grep -q '^vfio_pci ' /proc/modules && ! ls /sys/bus/pci/drivers/vfio-pci/ 2>/dev/null | grep -Eq "$(echo "$ADDRESS_RE" | tr -d '^$')" &&
			run modprobe -r vfio-pci || true ;;
		esac
	done || exit 1
	finish undone
fi

[ $# -eq 0 ] || { usage >&2; exit 2; }
if [ ! -e /sys/module/vfio_pci ]; then
	record loaded vfio_pci
	run modprobe vfio-pci
fi
if [ "$(cat "$R$CONF" 2>/dev/null)" != "$WANT" ]; then
	put_file "$CONF" "$(sha "$R$CONF")" "$(printf '%s\n' "$WANT" | base64)"
fi
[ "$DRY" = 1 ] || [ -e /sys/module/vfio_pci ] || die 1 "vfio_pci is not loaded after modprobe"
finish done
