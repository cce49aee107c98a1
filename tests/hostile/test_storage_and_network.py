"""Host uses the sysfs layout hides: NVMe multipath namespaces, multi-device btrfs, IPv6 default routes."""

import os

from tests.conftest import PROJECT
from tests.e2e.audit_run import audit

BUNDLED = (PROJECT / "profiles" / "dl360-gen9.yaml").read_text()
PROFILE = PROJECT / "profiles" / "dl360-gen9.yaml"


def test_mounted_multipath_namespace_on_a_passed_controller_fails(host, tmp_path):
    # The kernel's layout for a multi-controller drive (nvme_core.multipath=Y), as the Debian 6.1
    # guest shows it for QEMU's nvme-subsys with two controllers: /sys/block/nvme2n1 ->
    # ../devices/virtual/nvme-subsystem/nvme-subsys2/nvme2n1, and nvme-subsys2/nvme1 ->
    # ../../../pci0000:00/0000:00:16.0/nvme/nvme1 (one link per controller).
    subsys = host.path("sys/devices/virtual/nvme-subsystem/nvme-subsys9")
    (subsys / "nvme9n1").mkdir(parents=True)
    (subsys / "nvme9n1/dev").write_text("259:9\n")
    ctrl = host.device_dir("0000:07:00.0") / "nvme/nvme9"
    ctrl.mkdir(parents=True)
    os.symlink(os.path.relpath(ctrl, subsys), subsys / "nvme9")
    os.symlink("../devices/virtual/nvme-subsystem/nvme-subsys9/nvme9n1", host.path("sys/block/nvme9n1"))
    host.append("proc/mounts", "/dev/nvme9n1 /srv/scratch xfs rw,relatime 0 0\n")
    run = audit(tmp_path, PROFILE, f"--sysroot={host.root}")
    test = "test_device_not_used_by_host[dl360-gen9-01-ceph-nvme-2]"
    assert run.rc == 1 and run.outcome(test) == "failed", run.output
    assert "/dev/nvme9n1 is mounted on /srv/scratch" in run.messages[test]
    assert run.outcome("test_device_not_used_by_host[dl360-gen9-01-ceph-nvme-1]") == "passed"


def test_second_device_of_a_mounted_btrfs_fails(host, tmp_path):
    # /proc/mounts names one member (the host's nvme0n1p2); gluster-hdd-2 (sdb) is the other one.
    devices = host.path("sys/fs/btrfs/5a1c7e0e-3b7e-4d2a-9f1e-0c2b6d8e4f10/devices")
    devices.mkdir(parents=True)
    for name, target in (("nvme0n1p2", "sys/block/nvme0n1/nvme0n1p2"), ("sdb", "sys/block/sdb")):
        os.symlink(os.path.relpath(host.path(target).resolve(), devices), devices / name)
    host.replace("proc/mounts", "/dev/nvme0n1p2 /boot ext4", "/dev/nvme0n1p2 /boot btrfs")
    run = audit(tmp_path, PROFILE, f"--sysroot={host.root}")
    test = "test_disk_not_used_by_host[dl360-gen9-01-gluster-hdd-2]"
    assert run.rc == 1 and run.outcome(test) == "failed", run.output
    assert "/dev/sdb is mounted on /boot (btrfs with nvme0n1p2, sdb)" in run.messages[test]
    assert run.outcome("test_disk_not_used_by_host[dl360-gen9-01-gluster-hdd-1]") == "passed"


def test_a_port_carrying_the_ipv6_default_route_fails(host, tmp_path):
    profile = tmp_path / "site.yaml"
    profile.write_text(BUNDLED.replace("\ndevices:\n", '\ndevices:\n  - name: nic-2\n    address: "0000:02:00.1"\n'
                                       '    id: "14e4:1657"\n    vm: z-ceph-1\n', 1))
    host.write("proc/net/ipv6_route",
               "00000000000000000000000000000000 00 00000000000000000000000000000000 00 fe800000000000000000000000000001 "
               "00000400 00000001 00000000 00000003     eno2\n"
               "00000000000000000000000000000000 00 00000000000000000000000000000000 00 00000000000000000000000000000000 "
               "ffffffff 00000001 00000000 00200200       lo\n")
    run = audit(tmp_path, profile, f"--sysroot={host.root}")
    test = "test_device_not_used_by_host[dl360-gen9-01-nic-2]"
    assert run.rc == 1 and run.outcome(test) == "failed", run.output
    assert "eno2 carries the default route" in run.messages[test]
