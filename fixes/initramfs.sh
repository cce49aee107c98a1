#!/bin/sh
# initramfs (for vfio-modules and vfio-ids-scope): rebuild the initramfs of every installed
# kernel after modprobe.d or modules-load.d changed. The image carries its own copy of them, and
# a vfio-pci loaded early from it must see what the real root sees (the Debian/Proxmox practice:
# "after changing anything modules related, refresh the initramfs"). --fix plans this step once,
# after those changes, with the tools its probe found: update-initramfs (Debian, Ubuntu,
# Proxmox), dracut (RHEL family), proxmox-boot-tool (copies the images to the ESPs it manages).
usage() {
	cat <<'U'
usage: initramfs.sh [--dry-run] [--step-dir DIR] TOOL...   TOOL: update-initramfs | dracut | proxmox-boot-tool
       initramfs.sh --undo --step-dir DIR   (rebuilds again; --fix undoes this step after the run's other steps)
exit: 0 done (reboot required), 1 failed, 2 usage error
U
}
[ -n "${IOMMU_AUDIT_LIB:-}" ] || . "$(dirname "$0")/lib.sh"
while common_option "$@"; do shift $SHIFT; done
start_step initramfs

rebuild() {
	for t in "$@"; do
		command -v "$t" >/dev/null 2>&1 || die 1 "$t is not installed"
		case $t in
		update-initramfs) run update-initramfs -u -k all ;;
		dracut) run dracut -f --regenerate-all ;;
		proxmox-boot-tool) run proxmox-boot-tool refresh ;;
		esac
	done
}

if [ "$UNDO" = 1 ]; then
	rebuild $(sed -n 's/^tools //p' "$STEP_DIR/record" 2>/dev/null)
	finish undone
fi
[ $# -ge 1 ] || { usage >&2; exit 2; }
for t in "$@"; do
	case $t in update-initramfs | dracut | proxmox-boot-tool) ;; *) usage >&2; exit 2 ;; esac
done
record "tools $*"
rebuild "$@"
finish "done (reboot required)"
