"""Hostile inputs: another VM reaches a passed device or disk by a route the happy path misses.

Each case breaks a copy of the sample host and runs the real audit on it
(`pytest --profile ... --sysroot=...`), asserting the exit code and the finding.
"""

import re

from tests.conftest import PROJECT
from tests.e2e.audit_run import audit

PROFILE = PROJECT / "profiles" / "dl360-gen9.yaml"
HOST = "dl360-gen9-01"  # the copy's directory name is its host id


def hostdev(bus: str, function: str = "0x0") -> str:
    return (f"    <hostdev mode='subsystem' type='pci' managed='yes'>\n      <source>\n"
            f"        <address domain='0x0000' bus='{bus}' slot='0x00' function='{function}'/>\n"
            "      </source>\n    </hostdev>\n")


def add_device(host, vm: str, xml: str, live_only: bool = False) -> None:
    """Put a device into a VM: its definition and its running VM's live status, or the live status alone."""
    for rel in ([] if live_only else [f"etc/libvirt/qemu/{vm}.xml"]) + [f"run/libvirt/qemu/{vm}.xml"]:
        host.replace(rel, "<interface type='bridge'>", xml.strip() + "\n    <interface type='bridge'>")


def test_a_group_split_across_two_vms_fails(host, tmp_path):
    # 01:00.2 joins ceph-nvme-1's group on vfio-pci (viable for the kernel) but z-gluster-1 holds it.
    host.move_to_group("0000:01:00.2", "14").bind("0000:01:00.2", "vfio-pci")
    add_device(host, "z-gluster-1", hostdev("0x01", "0x2"))
    run = audit(tmp_path, PROFILE, f"--sysroot={host.root}", "-k", "iommu_group_clean")
    assert run.rc == 1, run.output
    assert run.failed() == {f"test_iommu_group_clean[{HOST}-ceph-nvme-1]"}, run.output
    msg = run.messages[f"test_iommu_group_clean[{HOST}-ceph-nvme-1]"]
    assert "is a <hostdev> of VM z-gluster-1" in msg and "one VM only" in msg


def test_a_device_hot_plugged_into_another_running_vm_fails(host, tmp_path):
    add_device(host, "z-ceph-3", hostdev("0x06"), live_only=True)  # virsh attach-device --live
    run = audit(tmp_path, PROFILE, f"--sysroot={host.root}", "-k", "assigned_to_vm and not disk")
    assert run.rc == 1, run.output
    assert run.failed() == {f"test_assigned_to_vm[{HOST}-ceph-nvme-1]"}, run.output
    assert "also defined in z-ceph-3" in run.messages[f"test_assigned_to_vm[{HOST}-ceph-nvme-1]"]


def test_a_disk_reached_through_a_device_path_or_its_controller_fails(host, tmp_path):
    host.replace("etc/libvirt/qemu/z-ceph-2.xml", "/var/lib/libvirt/images/z-ceph-2.qcow2", "/dev/sda")
    add_device(host, "z-ceph-3", hostdev("0x03"))  # the Smart Array that holds both HDDs
    run = audit(tmp_path, PROFILE, f"--sysroot={host.root}", "-k", "disk_assigned_to_vm")
    assert run.rc == 1, run.output
    assert run.failed() == {f"test_disk_assigned_to_vm[{HOST}-gluster-hdd-1]",
                            f"test_disk_assigned_to_vm[{HOST}-gluster-hdd-2]"}, run.output
    msg = run.messages[f"test_disk_assigned_to_vm[{HOST}-gluster-hdd-1]"]
    assert "z-ceph-2 also reaches /dev/sda through /dev/sda" in msg
    assert "z-ceph-3 also reaches /dev/sda through <hostdev> 0000:03:00.0" in msg


def test_a_device_or_disk_only_hot_plugged_into_its_own_vm_fails(host, tmp_path):
    # virsh attach-device / attach-disk --live without --config: the running VM has them now,
    # its persistent definition does not, so they are gone at the VM's next start.
    for vm, element in (("z-ceph-1", r"<hostdev .*?</hostdev>"), ("z-gluster-1", r"<disk type='block'.*?</disk>")):
        rel = f"etc/libvirt/qemu/{vm}.xml"
        text, n = re.subn(rf"\n *{element}", "", host.read(rel), flags=re.S)
        assert n == 1, rel
        host.write(rel, text)
    run = audit(tmp_path, PROFILE, f"--sysroot={host.root}", "-k", "assigned_to_vm")
    assert run.rc == 1, run.output
    nvme, hdd = f"test_assigned_to_vm[{HOST}-ceph-nvme-1]", f"test_disk_assigned_to_vm[{HOST}-gluster-hdd-1]"
    assert run.failed() == {nvme, hdd}, run.output
    assert "0000:06:00.0 only in the running VM's live definition (gone at its next start)" in run.messages[nvme]
    assert "virsh attach-device z-ceph-1 <hostdev-0000:06:00.0.xml> --config" in run.messages[nvme]
    assert ("/dev/disk/by-id/wwn-0x5000c500b1c2d3e4 only in the running VM's live definition (gone at its next "
            "start)") in run.messages[hdd]
    assert "--config" in run.messages[hdd] and "also reaches" not in run.messages[hdd]
