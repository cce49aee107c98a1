#!/bin/sh
# /init of the iommu-audit test guest (runs as PID 1 from the initramfs).
# Sets up the minimum a "KVM host" under audit needs, then hands over to
# busybox init, which reaps zombies, respawns dropbear and handles poweroff.
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts /dev/shm /run /tmp
mount -t devpts devpts /dev/pts
mount -t tmpfs tmpfs /run
mount -t tmpfs tmpfs /tmp
ln -sf /proc/self/mounts /etc/mtab

name=guest
for arg in $(cat /proc/cmdline); do
    case "$arg" in iommu_audit.hostname=*) name="${arg#*=}" ;; esac
done
echo "$name" > /etc/hostname
hostname "$name"

# crc32c is only a softdep (crypto-crc32c) of nvme-core/ext4: load it explicitly.
for m in crc32c_generic nvme e1000e virtio_net; do
    modprobe "$m" || echo "iommu-audit-guest: modprobe $m failed" > /dev/console
done

# Opt-in (qemu.Guest(persistent_disk=True)): an ext4 virtio disk (the only virtio PCI function)
# keeps what --fix writes across a "reboot" (a new QEMU with the same disks). Mounted and
# bind-mounted over the initramfs's directories before udev coldplugs, as /etc is on a real host.
PERSIST_DIRS="etc/driverctl.d etc/udev/rules.d etc/modprobe.d etc/modules-load.d etc/default etc/kernel var/log/iommu-audit"
if grep -qx 0x1af4 /sys/bus/pci/devices/*/vendor 2>/dev/null; then
    modprobe -a virtio_pci virtio_blk  # the PCI transport creates virtio0, then virtio_blk binds it
    i=0
    while [ ! -e /dev/vda ] && [ "$i" -lt 600 ]; do sleep 0.1; i=$((i + 1)); done  # TCG under load: slow probe
    mkdir -p /persist
    if mount -t ext4 /dev/vda /persist; then
        for d in $PERSIST_DIRS; do
            mkdir -p "/$d"
            [ -d "/persist/$d" ] || { mkdir -p "/persist/$d" && cp -a "/$d/." "/persist/$d/"; }
            mount --bind "/persist/$d" "/$d"
        done
    else
        echo "iommu-audit-guest: cannot mount the persistent disk /dev/vda" > /dev/console
    fi
fi

# Opt-in (qemu.Guest(udev=True)): Debian's systemd-udevd, started as Debian's udev init script
# does, after nvme has bound (as on a real host whose initramfs loaded it): the rules must rebind.
if [ -x /usr/bin/udevadm ]; then
    # systemd-modules-load's part (it runs before udev's coldplug): modules-load.d lists.
    cat /etc/modules-load.d/*.conf 2>/dev/null | sed 's/[#;].*//' | while read -r m; do
        [ -z "$m" ] || modprobe "$m" || echo "iommu-audit-guest: modprobe $m failed" > /dev/console
    done
    /usr/lib/systemd/systemd-udevd --daemon
    udevadm trigger --type=subsystems --action=add
    udevadm trigger --type=devices --action=add
    udevadm settle --timeout=120 || echo "iommu-audit-guest: udevadm settle timed out" > /dev/console
    # systemd's part for the units rules ask for (TAG+="systemd" + ENV{SYSTEMD_WANTS}, e.g.
    # driverctl@pci-0000:00:10.0.service): there is no systemd here, so run the real unit file's
    # ConditionPathExists= and ExecStart= with %i = the instance, %I = it unescaped ("-" -> "/").
    udevadm info --export-db | awk '/^P: /{t=0; w=""} /^E: (CURRENT_)?TAGS=.*:systemd:/{t=1}
        /^E: SYSTEMD_WANTS=/{w=substr($0, 18)} /^$/{if (t && w != "") print w; t=0; w=""}
        END{if (t && w != "") print w}' | tr ' ' '\n' | sort -u | while read -r unit; do
        inst=${unit#*@}; inst=${inst%.service}; I=$(printf %s "$inst" | tr - /)
        file=/usr/lib/systemd/system/${unit%%@*}@.service
        [ -f "$file" ] || { echo "iommu-audit-guest: $unit: no $file" > /dev/console; continue; }
        cond=$(sed -n 's/^ConditionPathExists=//p' "$file" | sed "s|%i|$inst|g; s|%I|$I|g")
        [ -z "$cond" ] || [ -e "$cond" ] || continue
        cmd=$(sed -n 's/^ExecStart=//p' "$file" | sed "s|%i|$inst|g; s|%I|$I|g")
        echo "iommu-audit-guest: start $unit: $cmd" > /dev/console
        $cmd > /dev/console 2>&1 || echo "iommu-audit-guest: $unit failed" > /dev/console
    done
fi

# No udev by default: create the /dev/disk/by-id/nvme-<model>_<serial> links udev
# would, so tests can reference disks the way libvirt XML does on real hosts.
i=0
while [ "$i" -lt 50 ]; do
    want=$(ls /sys/class/nvme 2>/dev/null | wc -l)
    have=$(ls -d /sys/block/nvme* 2>/dev/null | wc -l)
    [ "$have" -ge "$want" ] && break
    sleep 0.1; i=$((i + 1))
done
mkdir -p /dev/disk/by-id
for ns in /sys/block/nvme*; do
    [ -e "$ns" ] || continue
    dev=${ns##*/}
    ctrl=$(ls -d "$ns"/device 2>/dev/null) || continue
    model=$(cat "$ns/device/model" | sed 's/ *$//; s/ /_/g')
    serial=$(cat "$ns/device/serial" | sed 's/ *$//; s/ /_/g')
    ln -sf "../../$dev" "/dev/disk/by-id/nvme-${model}_${serial}"
done

ip link set lo up
for n in /sys/class/net/*; do
    n=${n##*/}
    [ "$n" = lo ] && continue
    ip link set "$n" up
    ip addr add 10.0.2.15/24 dev "$n"
    ip route add default via 10.0.2.2 dev "$n"
    # Wait for carrier (e1000e autoneg takes ~3 s): SYNs sent before it are
    # dropped and the host's ssh then sits in TCP retransmit backoff.
    i=0
    while [ "$(cat /sys/class/net/$n/carrier 2>/dev/null)" != 1 ] && [ "$i" -lt 150 ]; do
        sleep 0.1; i=$((i + 1))
    done
    break
done

echo "iommu-audit-guest: ready ($name)" > /dev/console
exec /sbin/init
