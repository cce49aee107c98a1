#!/bin/sh
# assigned-to-vm: add a PCI function to a libvirt domain's persistent definition as
# <hostdev mode='subsystem' type='pci' managed='yes'> (virsh attach-device --config), never
# twice; a running VM gets it at its next start. --detach removes it from a domain instead
# (--fix only does that when asked with --fix-detach).
usage() {
	cat <<'U'
usage: assigned-to-vm.sh [--dry-run] [--step-dir DIR] [--detach] DOMAIN ADDRESS
       assigned-to-vm.sh --undo --step-dir DIR
exit: 0 done or nothing to do, 1 failed, 2 usage error, 3 refused
U
}
[ -n "${IOMMU_AUDIT_LIB:-}" ] || . "$(dirname "$0")/lib.sh"
while common_option "$@"; do shift $SHIFT; done
start_step assigned-to-vm

hostdev_xml() { # ADDRESS -> the <hostdev> element libvirt prints for it
	IFS=:. read -r d b s f <<X
$1
X
	printf "<hostdev mode='subsystem' type='pci' managed='yes'>\n  <source>\n    <address domain='0x%s' bus='0x%s' slot='0x%s' function='0x%s'/>\n  </source>\n</hostdev>\n" "$d" "$b" "$s" "$f"
}
source_line() { IFS=:. read -r d b s f <<X
$1
X
	echo "<address domain='0x$d' bus='0x$b' slot='0x$s' function='0x$f'/>"; }
defined_in() { virsh dumpxml --inactive "$1" 2>/dev/null | grep -F -A3 "<hostdev mode='subsystem' type='pci'" | grep -qF "$(source_line "$2")"; }
change() { # attach|detach DOMAIN ADDRESS
	x=$STEP_DIR/hostdev-$3.xml
	[ "$DRY" = 1 ] || hostdev_xml "$3" >"$x"
	run virsh "$1-device" "$2" "$x" --config
}

if [ "$UNDO" = 1 ]; then
	records_reversed | while read -r kind vm a; do
		case $kind in
		attached) change detach "$vm" "$a" ;;
		detached) change attach "$vm" "$a" ;;
		esac
	done || exit 1
	finish undone
fi

op=attach
[ "${1:-}" = --detach ] && { op=detach; shift; }
[ $# -eq 2 ] || { usage >&2; exit 2; }
vm=$1 a=$2
valid_address "$a"
command -v virsh >/dev/null 2>&1 || die 1 "virsh is not installed"
virsh dominfo "$vm" >/dev/null 2>&1 || die 3 "no libvirt domain named '$vm'"
if [ $op = attach ]; then
	defined_in "$vm" "$a" && finish "nothing to do: $a is already in $vm"
	record "attached $vm $a"
	change attach "$vm" "$a"
	[ "$DRY" = 1 ] || defined_in "$vm" "$a" || die 1 "$a is not in $vm's definition after attach-device"
else
	defined_in "$vm" "$a" || finish "nothing to do: $a is not in $vm"
	record "detached $vm $a"
	change detach "$vm" "$a"
	[ "$DRY" = 1 ] || ! defined_in "$vm" "$a" || die 1 "$a is still in $vm's definition after detach-device"
fi
finish done
