"""The probe reads attributes and links of all devices with a few processes (probe.sh `links`,
`attrs`); what it reads must equal what one process per file read (tests/data/probe_per_file.sh)."""

import importlib.util
import os
import subprocess
from pathlib import Path

import pytest

from iommu_audit import gather
from iommu_audit.facts import from_probe
from iommu_audit.parsers import libvirt, modules, platform, storage, sysfs
from iommu_audit.parsers.sections import MARKER, split
from tests.conftest import PROJECT

REFERENCE = PROJECT / "tests" / "data" / "probe_per_file.sh"


def facts(sections: dict, domains: list[tuple[str, str, str]], rows) -> dict:
    """What the parsers make of the touched sections; rows(name) gives a section's rows."""
    block = rows("block")
    network = sysfs.network(rows("net"))
    plat = platform.platform(rows("platform"))
    return {"groups": sysfs.iommu_groups(rows("iommu_groups")), "pci": sysfs.pci_devices(rows("pci")),
            "nvme": sysfs.nvme_controllers(rows("nvme")), "slots": sysfs.slots(rows("slots")),
            "block": storage.block_devices(block), "btrfs": storage.btrfs_members(block),
            "disk_links": storage.disk_links(rows("disk_links")), "nics": network.nic_address,
            "uppers": network.uppers, "driverctl": modules.driverctl_overrides(rows("driverctl")),
            "numa": plat.numa_node, "node_cpus": plat.node_cpus,
            "domains": [libvirt.domain(name, state, text) for state, name, text in domains]}


def batched(root: Path) -> dict:
    return batched_facts(subprocess.run(["sh", "-c", gather.PROBE, "probe", str(root), "M"], capture_output=True,
                                        text=True, errors="replace", timeout=120, check=True).stdout)


def batched_facts(out: str, marker: str = "M") -> dict:
    s = {sec.name: sec for sec in split(out, marker)}
    join = {"iommu_groups": sysfs.group_rows, "pci": sysfs.pci_rows, "nvme": sysfs.nvme_rows, "slots": sysfs.slot_rows,
            "block": storage.block_rows, "disk_links": storage.disk_link_rows, "net": sysfs.net_rows,
            "driverctl": modules.driverctl_rows, "platform": platform.platform_rows}
    return facts(s, libvirt.files_domains(s["libvirt"].body), lambda name: join[name](s[name].raw()))


def per_file(root: Path) -> dict:
    return per_file_facts(subprocess.run(["sh", str(REFERENCE), str(root), "M"], capture_output=True, text=True,
                                         errors="replace", timeout=300, check=True).stdout)


def per_file_facts(out: str, marker: str = "M") -> dict:
    parts = split(out, marker)
    s = {sec.name: sec for sec in parts}
    return facts(s, [(d.args[0], d.args[1], d.body) for d in parts if d.name == "domain"], lambda n: s[n].rows())


def test_sample_host(host):
    want = per_file(host.root)
    assert want["pci"] and want["block"] and want["domains"] and want["driverctl"]  # the sample has them all
    assert batched(host.root) == want


def test_many_devices(tmp_path):
    spec = importlib.util.spec_from_file_location("roundtrips", PROJECT / "bench" / "roundtrips.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    bench.build_host(tmp_path / "host", 40)
    want = per_file(tmp_path / "host")
    assert len(want["pci"]) > 40 and len(want["domains"]) > 40
    assert batched(tmp_path / "host") == want


def link(path: Path, target: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.symlink_to(target)


def test_odd_but_real_shapes(host):
    """Holders, a bridge and a bond on a port, an NVMe multipath namespace, a label with a space, an
    empty driverctl file, missing and special files, a device link to nothing."""
    link(host.path("sys/block/sdb/holders/dm-1"), "../../../../../../../../../virtual/block/dm-1")
    eno1 = host.path("sys/class/net/eno1").resolve()
    link(eno1 / "master", "../../../../../../../virtual/net/bond0")
    link(eno1 / "upper_vmbr0", "../../../../../../../virtual/net/vmbr0")
    sub = host.path("sys/devices/virtual/nvme-subsystem/nvme-subsys1")
    (sub / "nvme1n1").mkdir(parents=True)
    link(sub / "nvme1", "../../../pci0000:00/0000:00:02.0/0000:04:00.0/0000:05:08.0/0000:06:00.0/nvme/nvme1")
    link(sub / "nvme2", "../../../pci0000:00/0000:00:02.0/0000:04:00.0/0000:05:09.0/0000:07:00.0/nvme/nvme2")
    link(host.path("sys/block/nvme1n1"), "../devices/virtual/nvme-subsystem/nvme-subsys1/nvme1n1")
    host.write("sys/devices/virtual/nvme-subsystem/nvme-subsys1/nvme1n1/dev", "259:9\n")
    host.write("run/udev/data/b259:9", "E:ID_FS_TYPE=zfs_member\nE:ID_FS_LABEL=tank\nE:ID_FS_TYPE=other\n")
    link(host.path("dev/disk/by-label/my disk"), "../../sda1")
    host.write("etc/driverctl.d/pci-0000:08:00.0", "")
    dev = host.device_dir("0000:06:00.0")
    (dev / "subsystem_device").unlink()
    (dev / "numa_node").unlink(missing_ok=True)
    os.mkfifo(dev / "numa_node")
    (dev / "driver_override").write_text("  vfio-pci \n")
    link(host.path("sys/bus/pci/devices/0000:7f:00.0"), "../../../devices/pci0000:7f/0000:7f:00.0")
    want = per_file(host.root)
    assert want["block"]["nvme1n1"].controllers == ("0000:06:00.0", "0000:07:00.0")
    assert want["block"]["nvme1n1"].fstype == "zfs_member" and want["uppers"]["eno1"] == ["bond0", "vmbr0"]
    assert batched(host.root) == want


def test_facts_saved_before_the_batching_read_the_same(host):
    # --facts and --baseline files written by the per-file probe hold whole rows in these sections.
    parts = split(subprocess.run(["sh", str(REFERENCE), str(host.root), MARKER], capture_output=True, text=True,
                                 check=True).stdout)
    reference = {s.name: s for s in parts}
    old = []
    for s in split(host.probe_output()):
        body = (reference.get(s.name) or s).body
        if s.name == "libvirt":  # the files came as domain sections
            body = "\n".join(f"{MARKER} domain {' '.join(d.args)}\n{d.body}" for d in parts if d.name == "domain")
        elif s.name in ("net", "platform"):  # the reference has only the rows it read per file
            body += "".join("\n" + ln for ln in s.body.splitlines()
                            if not ln.startswith(("l\t", "./", "dev\t", "numa\t", "node\t")))
        old.append(f"{MARKER} {' '.join((s.name, *s.args))}\n{body}")
    old_text = "\n".join(old)
    assert "l\t./" not in old_text and "0000:06:00.0\t0x144d" in old_text  # rows as the per-file probe wrote them
    assert from_probe("x", old_text) == from_probe("x", host.probe_output())


@pytest.mark.skipif(not Path("/sys/bus/pci/devices").is_dir(), reason="no sysfs")
def test_this_machine():
    # The live branch (root /) of this machine, read-only. The per-file probe read node cpulists
    # with sh's `read`, which gets nothing from the binary sysfs attribute of kernel 5.14+; grep gets it.
    want, got = per_file(Path("/")), batched(Path("/"))
    assert {k: v for k, v in got.items() if k != "node_cpus"} == {k: v for k, v in want.items() if k != "node_cpus"}
    assert got["node_cpus"] and all(got["node_cpus"].values())
