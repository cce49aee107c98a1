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

# No udev here: create the /dev/disk/by-id/nvme-<model>_<serial> links udev
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
