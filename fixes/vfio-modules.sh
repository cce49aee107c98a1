#!/bin/sh
# vfio-modules: load vfio-pci (which pulls in vfio) and vfio_iommu_type1 now, verify all three,
# and list them in /etc/modules-load.d/vfio-pci.conf so systemd loads them at every boot.
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
		loaded) case $what in
			vfio_pci) grep -q '^vfio_pci ' /proc/modules && ! ls /sys/bus/pci/drivers/vfio-pci/ 2>/dev/null | grep -Eq "$(echo "$ADDRESS_RE" | tr -d '^$')" &&
				run modprobe -r vfio-pci ;;
			*) grep -q "^$what [0-9]* 0 " /proc/modules && run modprobe -r "$what" ;; # unused only
			esac || true ;;
		esac
	done || exit 1
	finish undone
fi

[ $# -eq 0 ] || { usage >&2; exit 2; }
# Loaded or built in, as the audit's vfio-modules reads it (a built-in module without parameters has no /sys/module entry).
active() { [ -e "/sys/module/$1" ] || { tr - _ <"/lib/modules/$(uname -r)/modules.builtin"; } 2>/dev/null | grep -q "/$1\.ko\$"; }
# vfio-pci pulls in vfio, and vfio_iommu_type1 by vfio's softdep, but only when vfio itself is loaded then.
for m in vfio_pci vfio_iommu_type1; do
	active $m && continue
	record loaded $m
	run modprobe $m
done
if [ "$(cat "$R$CONF" 2>/dev/null)" != "$WANT" ]; then
	put_file "$CONF" "$(sha "$R$CONF")" "$(printf '%s\n' "$WANT" | base64)"
fi
for m in vfio vfio_pci vfio_iommu_type1; do
	[ "$DRY" = 1 ] || active $m || die 1 "$m is not loaded after modprobe"
done
finish done
