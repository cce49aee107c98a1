"""Self-tests of the e2e harness: one real guest driven by testinfra, one private libvirtd.

Run: pytest tests/e2e/harness/test_harness_smoke.py  (~40 s with TCG)
"""
from __future__ import annotations

import os
import subprocess

import pytest

from .fixtures import boot_guest, guest_image, libvirtd, libvirtd_server  # noqa: F401
from .qemu import by_id_path


@pytest.fixture(scope="module")
def intel_guest(boot_guest):  # noqa: F811
    return boot_guest("smoke-intel", iommu="intel", cmdline_extra="intel_iommu=on",
                      nvme=2, mounted_nvme=1)


def test_testinfra_over_ssh_config(intel_guest):
    testinfra = pytest.importorskip("testinfra")
    host = testinfra.get_host(f"ssh://{intel_guest.name}",
                              ssh_config=str(intel_guest.ssh_config_path))
    assert host.check_output("hostname") == intel_guest.name
    assert host.file("/sys/kernel/iommu_groups").is_directory
    assert "DMAR" in host.check_output("ls /sys/firmware/acpi/tables")
    assert host.file("/etc/modprobe.d").is_directory
    assert host.file("/etc/driverctl.d").is_directory


def test_groups_and_vfio_round_trip(intel_guest):
    groups = intel_guest.iommu_groups()
    bdf = intel_guest.nvme_addresses[0]
    assert [bdf] in groups.values()  # a root-bus NVMe is alone in its group
    group = intel_guest.bind_vfio(bdf)
    try:
        assert intel_guest.run(f"test -c /dev/vfio/{group}")[0] == 0
    finally:
        assert intel_guest.unbind_vfio(bdf) == "nvme"
    assert intel_guest.run(f"test -e /dev/vfio/{group}")[0] != 0


def test_host_side_ext4_mounts(intel_guest):
    dev = by_id_path(intel_guest.nvme_serials[intel_guest.mounted_nvme])
    rc, out, err = intel_guest.run(f"mount -t ext4 {dev} /mnt && findmnt -n -o FSTYPE /mnt; "
                                   "umount /mnt")
    assert rc == 0 and out.strip() == "ext4", err


def test_private_libvirtd_attach_detach(libvirtd_server, libvirtd):  # noqa: F811
    assert libvirtd.startswith("qemu:///system?socket=")
    name, bdf, disk = "z-ceph-1", "0000:00:10.0", by_id_path("CEPHNVME0004")
    libvirtd_server.define_domain(name)
    try:
        libvirtd_server.attach_hostdev(name, bdf)
        libvirtd_server.attach_disk(name, disk)
        xml = libvirtd_server.dumpxml(name)
        assert "slot='0x10'" in xml and disk in xml
        libvirtd_server.detach_hostdev(name, bdf)
        libvirtd_server.detach_disk(name, disk)
        xml = libvirtd_server.dumpxml(name)
        assert "<hostdev" not in xml and disk not in xml
        # Plain clients find it through LIBVIRT_DEFAULT_URI.
        out = subprocess.run(["virsh", "list", "--all", "--name"], capture_output=True,
                             text=True, env=dict(os.environ, LIBVIRT_DEFAULT_URI=libvirtd),
                             check=True).stdout
        assert name in out.split()
    finally:
        libvirtd_server.undefine(name)


def test_opt_in_udev_driverctl_and_persistent_disk(boot_guest):  # noqa: F811
    """The opt-in knobs (README "Topology knobs"): real udevd ran its coldplug, driverctl runs, and the
    directories --fix writes are on the persistent disk. Their reboot story is tests/e2e/test_reboot.py."""
    g = boot_guest("smoke-udev", fresh=True, iommu="intel", cmdline_extra="intel_iommu=on no_timer_check", nvme=1,
                   driverctl=True, persistent_disk=True)
    try:
        rc, out, err = g.run("udevadm --version; pidof systemd-udevd; udevadm info -q symlink /dev/nvme0n1; "
                             "findmnt -n -o SOURCE /etc/driverctl.d; findmnt -n -o SOURCE /etc/udev/rules.d; "
                             "driverctl list-devices storage", check=True)
        version, pid, links, *rest = out.splitlines()
        assert int(version) >= 252 and pid.strip()
        assert f"disk/by-id/nvme-QEMU_NVMe_Ctrl_{g.nvme_serials[0]}" in links.split()  # udev's own link
        assert rest[:2] == ["/dev/vda[/etc/driverctl.d]", "/dev/vda[/etc/udev/rules.d]"], out
        assert f"{g.nvme_addresses[0]} nvme" in rest[2:], out  # driverctl (bash) reads sysfs
    finally:
        g.close()
