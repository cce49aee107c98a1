# The probe's sysfs, disk, NIC, driverctl, NUMA and libvirt-file sections as they were read before
# the probe batched its reads: one process per file and link. The reference the batched probe must
# equal (tests/unit/test_probe_batched.py). Rows are the old ones, as parsers/*_rows rebuild them.
R=${1%/}
M=${2:-::ref::}
LC_ALL=C
export LC_ALL
sec() { printf "\n%s %s\n" "$M" "$*"; }
val() { v=; [ -f "$1" ] && { read -r v < "$1"; } 2>/dev/null; printf "%s" "$v"; }
link() { [ -L "$1" ] && { l=$(readlink "$1"); printf "%s" "${l##*/}"; }; }

sec iommu_groups
for g in "$R"/sys/kernel/iommu_groups/*; do
	[ -d "$g" ] || continue
	t=$(val "$g/type")
	for m in "$g"/devices/*; do
		[ -e "$m" ] || [ -L "$m" ] || continue
		printf "%s\t%s\t%s\n" "${g##*/}" "${m##*/}" "$t"
	done
done
sec pci
for d in "$R"/sys/bus/pci/devices/*; do
	[ -e "$d" ] || continue
	p=$(readlink "$d")
	printf "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n" "${d##*/}" \
		"$(val "$d/vendor")" "$(val "$d/device")" "$(val "$d/class")" \
		"$(val "$d/subsystem_vendor")" "$(val "$d/subsystem_device")" \
		"$(link "$d/driver")" "$(val "$d/driver_override")" \
		"$(link "$d/iommu_group")" "${p#*devices/}"
done
sec nvme
for c in "$R"/sys/bus/pci/devices/*/nvme/nvme*; do
	[ -d "$c" ] || continue
	d=${c%/nvme/*}
	printf "%s\t%s\t%s\t%s\n" "${d##*/}" "${c##*/}" "$(val "$c/serial")" "$(val "$c/model")"
done
sec slots
for s in "$R"/sys/bus/pci/slots/*; do
	[ -d "$s" ] || continue
	printf "%s\t%s\n" "${s##*/}" "$(val "$s/address")"
done
fstype() { mm=$(val "$1/dev"); [ -f "$R/run/udev/data/b$mm" ] && grep -m1 "^E:ID_FS_$2=" "$R/run/udev/data/b$mm" 2>/dev/null | sed "s/^E:ID_FS_$2=//"; }
sec block
for b in "$R"/sys/block/*; do
	[ -e "$b" ] || continue
	n=${b##*/}
	bp=$(readlink "$b")
	case $bp in */nvme-subsystem/*) for c in "$b"/../nvme*; do
		[ -L "$c" ] && printf "via\t%s\t%s\n" "$n" "$(readlink "$c")"
	done ;; esac
	printf "disk\t%s\t%s\t%s\t%s\t%s\n" "$n" "$bp" "$(ls "$b/holders" 2>/dev/null | tr '\n' ' ')" "$(fstype "$b" TYPE)" "$(fstype "$b" LABEL)"
	for p in "$b/$n"*; do
		[ -f "$p/partition" ] || continue
		printf "part\t%s\t%s\t%s\t%s\t%s\n" "${p##*/}" "$n" "$(ls "$p/holders" 2>/dev/null | tr '\n' ' ')" "$(fstype "$p" TYPE)" "$(fstype "$p" LABEL)"
	done
done
for d in "$R"/sys/fs/btrfs/*/devices/*; do
	[ -e "$d" ] || [ -L "$d" ] || continue
	u=${d%/devices/*}
	printf "btrfs\t%s\t%s\n" "${u##*/}" "${d##*/}"
done
sec disk_links
for l in "$R"/dev/disk/by-*/* "$R"/dev/mapper/*; do
	[ -L "$l" ] || continue
	printf "%s\t%s\n" "${l#"$R"}" "$(readlink "$l")"
done
sec net
for n in "$R"/sys/class/net/*; do
	[ -e "$n" ] || continue
	up=$(for u in "$n"/master "$n"/upper_*; do [ -L "$u" ] && link "$u" && printf " "; done)
	printf "dev\t%s\t%s\t%s\n" "${n##*/}" "$(link "$n/device")" "$up"
done
sec driverctl
for f in "$R"/etc/driverctl.d/*; do
	[ -f "$f" ] && printf "%s\t%s\n" "${f##*/}" "$(val "$f")"
done
sec platform
for d in "$R"/sys/bus/pci/devices/*; do
	[ -e "$d" ] && printf "numa\t%s\t%s\n" "${d##*/}" "$(val "$d/numa_node")"
done
for n in "$R"/sys/devices/system/node/node*; do
	[ -d "$n" ] && printf "node\t%s\t%s\n" "${n##*node}" "$(val "$n/cpulist")"
done
for f in "$R"/etc/libvirt/qemu/*.xml "$R"/run/libvirt/qemu/*.xml; do
	[ -f "$f" ] || continue
	n=${f##*/}
	case $f in "$R"/run/*) sec domain live "${n%.xml}" ;; *) sec domain defined "${n%.xml}" ;; esac
	cat "$f"
done
sec end
