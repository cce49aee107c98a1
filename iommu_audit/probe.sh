# iommu-audit probe: prints every fact the checks need, in one run, read-only.
#
#   sh probe.sh [ROOT [MARKER]]
#
# POSIX sh (dash, busybox ash). It only reads files and runs read-only tools
# (readlink, dmesg, virsh list/dumpxml). With ROOT other than "/" it reads an
# offline copy of a host (see README "Sysroot layout") and runs no host tool,
# so the same code path audits live hosts, captures and test trees.
#
# Output: sections, each opened by a line "MARKER NAME [ARGS]". The caller picks a
# random MARKER per run, so no file or VM definition copied verbatim can forge a
# section. Rows inside a section are tab-separated.

R=${1:-/}
R=${R%/}
M=${2:-::iommu-audit::}
LC_ALL=C
export LC_ALL
TAB=$(printf "\t")
# Only regular files are read, at most CAP bytes (a FIFO or /dev/zero in place of a
# file would hang or never end); host tools get 30 s each where timeout exists.
CAP=16777216
T=
command -v timeout >/dev/null 2>&1 && T="timeout 30"

sec() { printf "\n%s %s\n" "$M" "$*"; }
# val FILE: print the first line of FILE, or nothing if it is unreadable.
val() { v=; [ -f "$1" ] && { read -r v < "$1"; } 2>/dev/null; printf "%s" "$v"; }
# body FILE: FILE's text, capped.
body() { [ -f "$1" ] && head -c "$CAP" "$1" 2>/dev/null; }
# A host has hundreds of devices: their attributes and links are read by a few processes for
# all of them, as raw rows the parsers join (parsers/sections.py Section.raw). Paths start "./".
# links PATH...: "l TAB PATH TAB TARGET" for each symlink (one ls; -n: no user names to parse).
unset TIME_STYLE QUOTING_STYLE
links() {
	ls -ldn -- "$@" 2>/dev/null |
		sed -n "s/^l[^ ]*  *[0-9]*  *[0-9]*  *[0-9]*  *[0-9]* [A-Za-z]*  *[0-9]*  *[0-9:]* \(.*\) -> /l$TAB\1$TAB/p"
}
# attrs PATH...: "PATH:FIRST-LINE" for each regular file (find skips what would hang grep).
attrs() { find "$@" -prune -type f -exec grep -a -s -H -m1 '' {} + 2>/dev/null; }
# files GLOB...: cat files, each after a "MARKER:file PATH" row (PATH without ROOT);
# the marker keeps a "# file ..." comment inside a file from passing for a header.
files() {
	for f in "$@"; do
		[ -f "$f" ] || continue
		printf "%s:file %s\n" "$M" "${f#"$R"}"
		body "$f"
		printf "\n"
	done
}

sec probe 1 root="${R:-/}"
printf "hostname\t%s\n" "$(val "$R/proc/sys/kernel/hostname")"
printf "kernel\t%s\n" "$(val "$R/proc/sys/kernel/osrelease")"
printf "cpu_vendor\t%s\n" "$(body "$R/proc/cpuinfo" | grep -m1 '^vendor_id' | sed 's/.*: *//')"
if [ -z "$R" ]; then
	printf "uid\t%s\n" "$(id -u)"
	printf "ssh_connection\t%s\n" "$SSH_CONNECTION"
fi

# For the report: DMI identity (product_serial needs root), CPU model, distribution.
sec system
for f in sys_vendor product_name product_serial bios_version bios_date; do
	printf "%s\t%s\n" "$f" "$(val "$R/sys/class/dmi/id/$f")"
done
printf "cpu_model\t%s\n" "$(body "$R/proc/cpuinfo" | grep -m1 '^model name' | sed 's/.*: *//')"
printf "os\t%s\n" "$({ body "$R/etc/os-release"; body "$R/usr/lib/os-release"; } | sed -n 's/^PRETTY_NAME=//p' | head -n 1 | tr -d "\"'")"
# For --fix: the initramfs tools it may plan (a copy: the files; a live host: its PATH).
printf "boot_tools\t%s\n" "$(for t in update-initramfs dracut proxmox-boot-tool; do
	if [ -z "$R" ]; then command -v $t >/dev/null 2>&1; else for d in usr/sbin usr/bin sbin; do
	[ -e "$R/$d/$t" ] && break; done; fi && printf '%s ' $t; done)"

sec cmdline
val "$R/proc/cmdline"

sec acpi_tables
ls "$R/sys/firmware/acpi/tables" 2>/dev/null

sec class_iommu
ls "$R/sys/class/iommu" 2>/dev/null

# GROUP MEMBER rows; ./GROUP/type
sec iommu_groups
(cd "$R/sys/kernel/iommu_groups" 2>/dev/null && {
	for m in ./*/devices/*; do
		{ [ -e "$m" ] || [ -L "$m" ]; } && g=${m#./} && printf "%s\t%s\n" "${g%%/*}" "${m##*/}"
	done
	attrs ./*/type
})

# ADDRESS rows; links ./ADDRESS (its path), ./ADDRESS/driver, ./ADDRESS/iommu_group; attributes
sec pci
(cd "$R/sys/bus/pci/devices" 2>/dev/null && {
	for d in ./*; do [ -e "$d" ] && printf "%s\n" "${d#./}"; done
	links ./* ./*/driver ./*/iommu_group
	attrs ./*/vendor ./*/device ./*/class ./*/subsystem_vendor ./*/subsystem_device ./*/driver_override
})

# ADDRESS CONTROLLER rows; ./ADDRESS/nvme/CONTROLLER/serial, model (readable only while on the nvme driver)
sec nvme
(cd "$R/sys/bus/pci/devices" 2>/dev/null && {
	for c in ./*/nvme/nvme*; do [ -d "$c" ] && d=${c#./} && printf "%s\t%s\n" "${d%%/*}" "${c##*/}"; done
	attrs ./*/nvme/nvme*/serial ./*/nvme/nvme*/model
})

sec slots
(cd "$R/sys/bus/pci/slots" 2>/dev/null && attrs ./*/address)

# holders DIR: names in DIR/holders, each followed by a space (dm-*/md* stacked on top)
holders() { h=; for x in "$1"/holders/*; do { [ -e "$x" ] || [ -L "$x" ]; } && h="$h${x##*/} "; done; :; }

# disk NAME HOLDERS / part NAME DISK HOLDERS rows; links ./NAME (its path) and ./NAME/../nvme* (each
# controller of an NVMe multipath namespace's subsystem); ./NAME/dev and ./NAME/PART/dev (MAJ:MIN);
# udev's ID_FS_TYPE/LABEL as "bMAJ:MIN:E:ID_FS_TYPE=..." (zfs_member, LVM2_member, ceph_bluestore...:
# a use that leaves no mount and no holder behind; a ZFS label is its pool). btrfs UUID NAME rows:
# members of a (multi-device) btrfs. parsers/storage.py block_rows joins them.
sec block
(cd "$R/sys/block" 2>/dev/null && {
	for b in ./*; do
		[ -e "$b" ] || continue
		n=${b#./}
		holders "$b"
		printf "disk\t%s\t%s\n" "$n" "$h"
		for p in "$b/$n"*; do
			[ -f "$p/partition" ] && holders "$p" && printf "part\t%s\t%s\t%s\n" "${p##*/}" "$n" "$h"
		done
	done
	links ./* ./*/../nvme*
	attrs ./*/dev ./*/*/dev
})
(cd "$R/run/udev/data" 2>/dev/null && find b* -prune -type f -exec grep -a -s -H -E '^E:ID_FS_(TYPE|LABEL)=' {} + 2>/dev/null)
for d in "$R"/sys/fs/btrfs/*/devices/*; do
	[ -e "$d" ] || [ -L "$d" ] || continue
	u=${d%/devices/*}
	printf "btrfs\t%s\t%s\n" "${u##*/}" "${d##*/}"
done

# Stable names of block devices: PATH TARGET (by-id, by-path, by-uuid, ..., /dev/mapper).
sec disk_links
(cd "$R/dev" 2>/dev/null && links ./disk/by-*/* ./mapper/*)

sec fstab
files "$R/etc/fstab" "$R/etc/crypttab"

sec mounts
body "$R/proc/mounts"
sec swaps
body "$R/proc/swaps"
sec mdstat
body "$R/proc/mdstat"

# dev NAME PCI-FUNCTION UPPERS: a bridge, bond or VLAN on top carries the port's traffic.
sec net
(cd "$R/sys/class/net" 2>/dev/null && {
	for n in ./*; do [ -e "$n" ] && printf "dev\t%s\n" "${n#./}"; done
	links ./*/device ./*/master ./*/upper_*
})
# Interface of the default route (/proc/net/route: Iface Destination ...).
[ -f "$R/proc/net/route" ] && while read -r ifc dst _; do
	[ "$dst" = 00000000 ] && printf "default\t%s\n" "$ifc"
done < "$R/proc/net/route"
# IPv6 (/proc/net/ipv6_route: Dest Plen Src Plen Gateway Metric Ref Use Flags Iface); ::/0 on lo is "unreachable".
[ -f "$R/proc/net/ipv6_route" ] && while read -r dst plen _ _ _ _ _ _ _ ifc; do
	[ "$dst$plen" = 0000000000000000000000000000000000 ] && [ "$ifc" != lo ] && printf "default\t%s\n" "$ifc"
done < "$R/proc/net/ipv6_route"
if [ -z "$R" ] && command -v ip >/dev/null 2>&1; then
	ip -o addr show 2>/dev/null | while read -r _ ifc fam addr _; do
		printf "addr\t%s\t%s\n" "$ifc" "${addr%/*}"
	done
fi
# Local ends of established TCP connections (hex addr:port), to find SSH sessions even
# when sudo has dropped SSH_CONNECTION.
sshport=$(printf "%04X" "${SSH_CONNECTION##* }" 2>/dev/null)
for t in "$R/proc/net/tcp" "$R/proc/net/tcp6"; do
	[ -f "$t" ] && while read -r _ local _ st _; do
		[ "$st" = 01 ] || continue
		case $local in *:0016 | *:"${sshport:-0016}") printf "tcp\t%s\n" "$local" ;; esac
	done < "$t"
done

sec modules
kver=$(val "$R/proc/sys/kernel/osrelease")
[ -f "$R/proc/modules" ] && while read -r name _; do printf "loaded\t%s\n" "$name"; done < "$R/proc/modules"
for m in "$R"/sys/module/vfio* "$R"/sys/module/pci_stub; do
	[ -d "$m" ] && printf "sysfs\t%s\n" "${m##*/}"
done
body "$R/lib/modules/$kver/modules.builtin" | grep -E 'vfio|pci-stub' | sed "s/^/builtin$TAB/"
body "$R/lib/modules/$kver/modules.dep" | grep -o -E '^[^:]*(vfio|pci-stub)[^:]*' | sed "s/^/file$TAB/"

sec modprobe_d
files "$R"/etc/modprobe.d/*.conf "$R"/run/modprobe.d/*.conf "$R"/lib/modprobe.d/*.conf "$R"/usr/lib/modprobe.d/*.conf

# FILE rows; ./FILE:DRIVER
sec driverctl
(cd "$R/etc/driverctl.d" 2>/dev/null && for f in ./*; do [ -f "$f" ] && printf "%s\n" "${f#./}"; done && attrs ./*)

# What applies /etc/driverctl.d at boot (driverctl's udev rule and unit, our fallback rule):
# PATH LINK LINES (LINES: uncommented lines naming driverctl). The first of these dirs
# holding a name replaces the others; a link to /dev/null or an empty file masks it.
sec binders
for n in udev/rules.d/05-driverctl.rules systemd/system/driverctl@.service udev/rules.d/89-iommu-audit-vfio.rules; do
	for d in etc run usr/local/lib usr/lib lib; do
		f=$R/$d/$n
		{ [ -e "$f" ] || [ -L "$f" ]; } && printf "%s\t%s\t%s\n" "${f#"$R"}" "$(readlink "$f")" "$(body "$f" | grep -c '^[^#]*driverctl')"
	done
done

sec boot_config
files "$R"/etc/default/grub "$R"/etc/default/grub.d/*.cfg "$R"/etc/kernel/cmdline "$R"/etc/kernel/proxmox-boot-uuids \
	"$R"/boot/grub2/grubenv "$R"/boot/grub/grubenv

# What the boot loader will really pass: grub.cfg's menu (entry/submenu/function headers,
# closing braces, kernel lines, set default=: which entry boots), BLS entries.
sec boot_generated
for f in "$R"/boot/grub/grub.cfg "$R"/boot/grub2/grub.cfg; do
	[ -f "$f" ] && body "$f" | grep -E '^[[:space:]]*((menuentry|submenu|function)[[:space:]]|linux(16|efi)?[[:space:]]|set default=|[}][[:space:]]*$)' | tr '\t' ' ' | sed "s|^|${f#"$R"}$TAB|"
done
for f in "$R"/boot/loader/entries/*.conf; do
	[ -f "$f" ] && printf "%s\t%s\n" "${f#"$R"}" "$(grep '^options' "$f" | tr '\t\n' '  ')"
done

# Firmware and placement: each group's reserved regions ("START END TYPE"; a group row
# alone means the file exists, 4.11+), NUMA node of each PCI function, node CPU
# lists, the vfio unsafe-mode parameters, and (copies only) key paths not copied.
sec platform
for g in "$R"/sys/kernel/iommu_groups/*; do
	[ -f "$g/reserved_regions" ] || continue
	printf "resv\t%s\n" "${g##*/}"
	while read -r l || [ -n "$l" ]; do printf "resv\t%s\t%s\n" "${g##*/}" "$l"; done 2>/dev/null < "$g/reserved_regions"
done
(cd "$R/sys/bus/pci/devices" 2>/dev/null && {
	for d in ./*; do [ -e "$d" ] && printf "numa\t%s\n" "${d#./}"; done
	attrs ./*/numa_node
})
(cd "$R/sys/devices/system/node" 2>/dev/null && {
	for n in ./node*; do [ -d "$n" ] && printf "node\t%s\n" "${n#./node}"; done
	attrs ./node*/cpulist
})
for p in vfio_iommu_type1/parameters/allow_unsafe_interrupts vfio/parameters/enable_unsafe_noiommu_mode; do
	[ -f "$R/sys/module/$p" ] && printf "param\t%s\t%s\n" "$p" "$(val "$R/sys/module/$p")"
done
if [ -n "$R" ]; then
	for p in sys/class/iommu sys/kernel/iommu_groups; do [ -d "$R/$p" ] || printf "missing\t%s\n" "$p"; done
fi

sec interrupts
body "$R/proc/interrupts" | grep -a -o -E '(IR|DMAR|AMD-Vi)-[A-Za-z0-9_-]+' | sort -u

# dmesg: the first line tells whether boot messages were rotated away; the
# rest is filtered on the host so a long-running host sends kilobytes, not MB.
DMESG_PATTERN='dmar|iommu|amd-vi|ivrs|vfio|remapping|rmrr|pci-dma|command line|linux version|bios is broken|bios vendor'
if [ -n "$R" ]; then
	src=; bad=; for f in "$R/dmesg" "$R/var/log/dmesg"; do
		if [ -f "$f" ] && [ -r "$f" ]; then src=${f#"$R"}; break; fi
		{ [ -e "$f" ] || [ -L "$f" ]; } && bad=${bad:-${f#"$R"}}
	done
	sec dmesg source="${src:-none}" ${bad:+unreadable="$bad"}
	# -a: one NUL byte must not turn the log into "binary file matches".
	[ -n "$src" ] && { body "$R$src" | head -n 1; body "$R$src" | grep -a -i -E "$DMESG_PATTERN"; }
else
	out=$($T dmesg 2>/dev/null)
	# 124 (GNU) / 143 (busybox, SIGTERM): the 30 s ran out; else non-zero is dmesg_restrict for non-root.
	case $? in 0) why= ;; 124 | 143) why=dmesg:timeout ;; *) why=dmesg:refused ;; esac
	# The ring buffer of a long-running host has lost its boot lines: the journal keeps them.
	case $(printf "%s\n" "$out" | head -n 1) in
	"[    0.000000]"*) ;;
	*) j=$($T journalctl -k -b -q --no-pager -o short-monotonic 2>/dev/null | sed 's/^\(\[[^]]*\]\) [^ ]* kernel: /\1 /') &&
		[ -n "$j" ] && out=$j src=journal ;;
	esac
	if [ -n "$out" ]; then
		sec dmesg source="${src:-dmesg}"
	else
		out=
		sec dmesg source=none ${why:+unreadable="$why"}
	fi
	[ -n "$out" ] && { printf "%s\n" "$out" | head -n 1; printf "%s\n" "$out" | grep -a -i -E "$DMESG_PATTERN"; }
fi

# libvirt: persistent definitions and what running VMs hold now (hot-plugged devices).
# virsh only when a daemon already runs: asking a socket would start one. Else the files.
lvd=
if [ -z "$R" ] && command -v virsh >/dev/null 2>&1; then
	lvd=stopped
	for p in /run/libvirtd.pid /run/virtqemud.pid; do
		v=$(val "$p") && [ -n "$v" ] && [ -d "/proc/$v" ] && lvd=${p#/run/}
	done
	[ "$lvd" = stopped ] && for c in /proc/[0-9]*/comm; do
		read -r n < "$c" 2>/dev/null && case $n in libvirtd | virtqemud) lvd=$n && break ;; esac
	done
	# /proc mounted hidepid=1/2 hides other users' processes (pid 1 too) from a non-root audit.
	[ "$lvd" = stopped ] && ! [ -r /proc/1/comm ] && lvd=unknown
fi
if [ "$lvd" = unknown ]; then
	sec libvirt source=error
	printf "cannot tell whether a libvirt daemon runs: /proc hides other users' processes (hidepid) from this non-root audit; run as root or with --sudo\n"
elif [ "${lvd:-stopped}" != stopped ]; then
	uri=${LIBVIRT_DEFAULT_URI:-qemu:///system}
	if names=$($T virsh -q -c "$uri" list --all --name 2>&1); then
		running=$($T virsh -q -c "$uri" list --name 2>/dev/null)
		sec libvirt source=virsh
		printf "%s\n" "$names" | while IFS= read -r dom; do
			[ -n "$dom" ] || continue
			sec domain defined "$dom"
			$T virsh -q -c "$uri" dumpxml --inactive --domain "$dom" 2>&1
			if printf "%s\n" "$running" | grep -qxF -- "$dom"; then
				sec domain live "$dom"
				$T virsh -q -c "$uri" dumpxml --domain "$dom" 2>&1
			fi
		done
	else
		sec libvirt source=error
		printf "%s\n" "$names"
	fi
elif [ -d "$R/etc/libvirt/qemu" ] && ! { [ -r "$R/etc/libvirt/qemu" ] && [ -x "$R/etc/libvirt/qemu" ]; }; then
	sec libvirt source=error
	printf "cannot read /etc/libvirt/qemu (and no libvirt daemon runs for virsh): run as root or with --sudo\n"
elif [ -d "$R/etc/libvirt/qemu" ] || [ -d "$R/run/libvirt/qemu" ] || [ "$lvd" = stopped ]; then
	# defined|live NAME rows, then every line of every file after its path (parsers/libvirt.py files_domains)
	sec libvirt source=files daemon="${lvd:-none}"
	(cd "$R/" && {
		for f in ./etc/libvirt/qemu/*.xml ./run/libvirt/qemu/*.xml; do
			[ -f "$f" ] || continue
			n=${f##*/}
			case $f in ./run/*) printf "live\t%s\n" "${n%.xml}" ;; *) printf "defined\t%s\n" "${n%.xml}" ;; esac
		done
		find ./etc/libvirt/qemu/*.xml ./run/libvirt/qemu/*.xml -prune -type f -exec grep -a -H '' {} + 2>/dev/null
	})
else
	sec libvirt source=none
fi
sec end
