#!/bin/sh
# cmdline-persistent (and cmdline-iommu): give the next boot the kernel arguments the profile
# needs. --fix computes the new boot configuration files (shown in its plan); this script
# backs them up, replaces them atomically and regenerates the boot loader configuration the
# host boots from. Which grub.cfg entry boots (GRUB_DEFAULT, grubenv) is the audit's to judge
# (parsers/grub.py): --fix reads the host again after this step and rolls it back if the
# entry that boots lacks the arguments. The running kernel keeps its arguments: reboot.
usage() {
	cat <<'U'
usage: cmdline-persistent.sh [--dry-run] [--step-dir DIR] --boot grub|grubby|kernel-cmdline
         [--grub-cfg /boot/grub/grub.cfg] [--file PATH --sha256 SHA256-NOW --content BASE64]...
         [--add ARG]... [--remove ARG]...
       cmdline-persistent.sh --undo --step-dir DIR
  grub:           update-grub, else grub-mkconfig / grub2-mkconfig -o the --grub-cfg
  grubby:         grubby --update-kernel=ALL --args=ADD --remove-args=REMOVE (RHEL BLS)
  kernel-cmdline: proxmox-boot-tool refresh, else kernel-install add for each kernel
exit: 0 done (reboot required), 1 failed, 2 usage error, 3 refused (a file changed since the plan)
U
}
[ -n "${IOMMU_AUDIT_LIB:-}" ] || . "$(dirname "$0")/lib.sh"
while common_option "$@"; do shift $SHIFT; done
start_step cmdline-persistent
BOOT= CFG=/boot/grub/grub.cfg ADD= REMOVE= FILES=

regenerate() {
	case $1 in
	grub)
		backup "$CFG"
		if [ "$CFG" = /boot/grub/grub.cfg ] && command -v update-grub >/dev/null 2>&1; then run update-grub
		elif command -v grub-mkconfig >/dev/null 2>&1; then run grub-mkconfig -o "$R$CFG"
		elif command -v grub2-mkconfig >/dev/null 2>&1; then run grub2-mkconfig -o "$R$CFG"
		else die 1 "no update-grub, grub-mkconfig or grub2-mkconfig on this host"; fi ;;
	grubby)
		for e in "$R"/boot/loader/entries/*.conf "$R"/boot/grub2/grubenv; do [ -e "$e" ] && backup "${e#"$R"}"; done
		command -v grubby >/dev/null 2>&1 || die 1 "grubby is not installed"
		set -- grubby --update-kernel=ALL
		[ -z "$ADD" ] || set -- "$@" "--args=${ADD# }"
		[ -z "$REMOVE" ] || set -- "$@" "--remove-args=${REMOVE# }"
		run "$@" ;;
	kernel-cmdline)
		if command -v proxmox-boot-tool >/dev/null 2>&1; then run proxmox-boot-tool refresh
		elif command -v kernel-install >/dev/null 2>&1; then
			for k in "$R"/lib/modules/*; do
				k=${k##*/}
				img=/lib/modules/$k/vmlinuz
				[ -e "$R$img" ] || img=/boot/vmlinuz-$k
				[ -e "$R$img" ] && run kernel-install add "$k" "$R$img"
			done
		else die 1 "neither proxmox-boot-tool nor kernel-install is installed"; fi ;;
	*) die 2 "--boot must be grub, grubby or kernel-cmdline" ;;
	esac
}

if [ "$UNDO" = 1 ]; then
	boot=
	records_reversed | while read -r kind what; do
		case $kind in
		file) restore_file "$what" ;;
		esac
	done || exit 1
	boot=$(sed -n 's/^boot //p' "$STEP_DIR/record" | head -n 1)
	# grub.cfg and BLS entries came back from their backups; proxmox/kernel-install copies must be redone.
	if [ "$boot" = kernel-cmdline ]; then STEP_DIR=$STEP_DIR/undo && mkdir -p "$STEP_DIR/backup" && regenerate kernel-cmdline; fi
	finish undone
fi

while [ $# -gt 0 ]; do
	case $1 in
	--boot) BOOT=$2 ;;
	--grub-cfg) CFG=$2 ;;
	--add) ADD="$ADD $2" ;;
	--remove) REMOVE="$REMOVE $2" ;;
	--file) [ $# -ge 6 ] && [ "$3" = --sha256 ] && [ "$5" = --content ] || die 2 "--file needs --sha256 and --content"
		case $2 in /etc/default/grub | /etc/default/grub.d/*.cfg | /etc/kernel/cmdline) ;; *) die 2 "will not write $2" ;; esac
		put_file "$2" "$4" "$6"; FILES="$FILES $2"; shift 4 ;;
	*) usage >&2; exit 2 ;;
	esac
	[ $# -ge 2 ] || { usage >&2; exit 2; }
	shift 2
done
[ -n "$BOOT" ] || { usage >&2; exit 2; }
case $CFG in /boot/grub/grub.cfg | /boot/grub2/grub.cfg | /boot/efi/EFI/*/grub.cfg) ;; *) die 2 "will not write $CFG" ;; esac
record "boot $BOOT"
regenerate "$BOOT"
say "not checked here: that the entry the boot loader boots has the arguments (--fix checks it with the audit's rule next; by hand: run the audit)"
finish "done (reboot required)"
