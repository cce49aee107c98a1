#!/bin/sh
# disk-assigned-to-vm: add a whole disk, by its stable /dev/disk/by-id name, to a libvirt
# domain's persistent definition as <disk type='block' device='disk'> on the next free virtio
# target (virsh attach-device --config), never twice.
usage() {
	cat <<'U'
usage: disk-assigned-to-vm.sh [--dry-run] [--step-dir DIR] DOMAIN /dev/disk/by-id/NAME
       disk-assigned-to-vm.sh --undo --step-dir DIR
exit: 0 done or nothing to do, 1 failed, 2 usage error, 3 refused
U
}
[ -n "${IOMMU_AUDIT_LIB:-}" ] || . "$(dirname "$0")/lib.sh"
while common_option "$@"; do shift $SHIFT; done
start_step disk-assigned-to-vm

disk_xml() { printf "<disk type='block' device='disk'>\n  <driver name='qemu' type='raw' cache='none' io='native'/>\n  <source dev='%s'/>\n  <target dev='%s' bus='virtio'/>\n</disk>\n" "$1" "$2"; }
has_disk() { virsh domblklist --inactive "$1" 2>/dev/null | awk '{print $2}' | grep -qxF "$2"; }

if [ "$UNDO" = 1 ]; then
	records_reversed | while read -r kind vm path target; do
		[ "$kind" = attached ] || continue
		x=$STEP_DIR/disk-$target.xml
		run virsh detach-device "$vm" "$x" --config
	done || exit 1
	finish undone
fi

[ $# -eq 2 ] || { usage >&2; exit 2; }
vm=$1 path=$2
printf '%s\n' "$path" | grep -Eq '^/dev/disk/by-id/[A-Za-z0-9][A-Za-z0-9._:+@-]*$' || die 2 "'$path' is not a /dev/disk/by-id name"
[ -b "$path" ] || die 3 "$path is not a block device on this host"
command -v virsh >/dev/null 2>&1 || die 1 "virsh is not installed"
virsh dominfo "$vm" >/dev/null 2>&1 || die 3 "no libvirt domain named '$vm'"
has_disk "$vm" "$path" && finish "nothing to do: $path is already in $vm"
used=$(virsh domblklist --inactive "$vm" | awk 'NR>2 {print $1}')
target=
for t in vdb vdc vdd vde vdf vdg vdh vdi vdj vdk vdl vdm vdn vdo vdp vdq vdr vds vdt vdu vdv vdw vdx vdy vdz; do
	echo "$used" | grep -qx "$t" || { target=$t; break; }
done
[ -n "$target" ] || die 1 "$vm has no free virtio target (vdb..vdz)"
record "attached $vm $path $target"
[ "$DRY" = 1 ] || disk_xml "$path" "$target" >"$STEP_DIR/disk-$target.xml"
run virsh attach-device "$vm" "$STEP_DIR/disk-$target.xml" --config
[ "$DRY" = 1 ] || has_disk "$vm" "$path" || die 1 "$path is not in $vm's definition after attach-device"
finish done
