"""Boot every harness topology and print what the guest kernel really shows.

    python -m tests.e2e.harness.evidence [topology ...] > evidence.txt

The output is the evidence pasted into README.md; rerun it after changing the
kernel or QEMU to refresh the test expectations.
"""
from __future__ import annotations

import concurrent.futures
import sys
import time

from . import guest_image, qemu

TOPOLOGIES = {
    "intel": dict(iommu="intel", cmdline_extra="intel_iommu=on", nvme=4, mounted_nvme=3),
    "amd": dict(iommu="amd", cmdline_extra="", nvme=2),
    "intel-noarg": dict(iommu="intel", cmdline_extra="", nvme=2),
    "intel-off": dict(iommu="intel", cmdline_extra="intel_iommu=off", nvme=2),
    "no-iommu-device": dict(iommu=None, cmdline_extra="intel_iommu=on", nvme=2),
    "bridge": dict(iommu="intel", cmdline_extra="intel_iommu=on", nvme=1, bridge_nvme=2),
}

PROBE = r"""
echo "## cmdline: $(cat /proc/cmdline)"
echo "## dmesg | grep -i -e DMAR -e IOMMU -e AMD-Vi"
dmesg | grep -i -e DMAR -e IOMMU -e AMD-Vi
echo "## ls /sys/firmware/acpi/tables"; ls /sys/firmware/acpi/tables | tr '\n' ' '; echo
echo "## ls /sys/class/iommu"; ls /sys/class/iommu | tr '\n' ' '; echo
echo "## iommu groups"
for g in $(ls /sys/kernel/iommu_groups 2>/dev/null | sort -n); do
  echo "group $g: $(ls /sys/kernel/iommu_groups/$g/devices | tr '\n' ' ')"; done
echo "## lspci"; lspci
echo "## nvme drivers"
for d in /sys/bus/pci/devices/*; do [ -e $d/driver ] && echo "${d##*/} $(basename $(readlink $d/driver))"; done
echo "## by-id"; ls /dev/disk/by-id
"""


def run_topology(image, name: str) -> str:
    lines = []
    with qemu.Guest(image, f"ev-{name}", **TOPOLOGIES[name]) as g:
        lines.append(f"### topology {name}: {TOPOLOGIES[name]}  accel={g.accel} "
                     f"boot-to-ssh={g.boot_seconds:.1f}s")
        lines.append(g.run(PROBE)[1])
        if g.iommu_groups():
            bdf = (g.bridge_nvme_addresses or g.nvme_addresses)[0]
            group = g.bind_vfio(bdf)
            rc, out, _ = g.run(f"ls -l /dev/vfio; readlink /sys/bus/pci/devices/{bdf}/driver")
            lines.append(f"## bind {bdf} -> vfio-pci: group {group}\n{out}")
            back = g.unbind_vfio(bdf)
            lines.append(f"## unbind {bdf} -> {back}; /dev/vfio: "
                         f"{g.run('ls /dev/vfio')[1].split()}")
        if g.mounted_nvme is not None:
            serial = g.nvme_serials[g.mounted_nvme]
            rc, out, err = g.run(f"mount -t ext4 {qemu.by_id_path(serial)} /mnt && findmnt /mnt && "
                                 f"lsblk -o NAME,SERIAL,FSTYPE,MOUNTPOINT")
            lines.append(f"## mount ext4 {serial}: rc={rc}\n{out}{err}")
    return "\n".join(lines)


def main(argv: list[str]) -> None:
    t = time.monotonic()
    image = guest_image.build()
    print(f"# image {image.kernel_version} build {image.build_seconds}s "
          f"size {image.size_bytes / 1e6:.1f} MB (get {time.monotonic() - t:.1f}s); "
          f"accel {qemu.accel(image)}")
    names = argv or list(TOPOLOGIES)
    for name in names:
        if name == "parallel":
            with concurrent.futures.ThreadPoolExecutor(2) as ex:
                t = time.monotonic()
                futs = [ex.submit(lambda n=n: qemu.Guest(image, f"par-{n}", nvme=1))
                        for n in (1, 2)]
                guests = [f.result() for f in futs]
                try:
                    list(ex.map(lambda g: g.start(), guests))
                    print(f"### parallel: ports {[g.port for g in guests]} hostnames "
                          f"{[g.run('hostname')[1].strip() for g in guests]} "
                          f"boot {[round(g.boot_seconds, 1) for g in guests]} "
                          f"wall {time.monotonic() - t:.1f}s")
                finally:
                    for g in guests:
                        g.close()
            continue
        print(run_topology(image, name), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
