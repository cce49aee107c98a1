from iommu_audit.rules import disks

SDA_XML = "etc/libvirt/qemu/z-gluster-1.xml"



def test_disk_present_by_wwn(host, dl360):
    v = disks.disk_present(host.facts(), dl360.device_named("gluster-hdd-1"))
    assert v.ok and "-> /dev/sda" in v.found


def test_missing_disk_lists_whole_disks(host, dl360):
    host.remove("dev/disk/by-id/wwn-0x5000c500b1c2d3e4")
    v = disks.disk_present(host.facts(), dl360.device_named("gluster-hdd-1"))
    assert not v.ok and "scsi-35000c500b1c2d3e4" in v.evidence[0]
    assert "nvme-Samsung_SSD_970_EVO_Plus_1TB_S4EWNX0R712345F-part1" not in v.evidence[0]


def test_partition_instead_of_disk(host, dl360):
    host.remove("dev/disk/by-id/wwn-0x5000c500b1c2d3e4")
    host.path("dev/disk/by-id/wwn-0x5000c500b1c2d3e4").symlink_to("../../nvme0n1p1")
    v = disks.disk_present(host.facts(), dl360.device_named("gluster-hdd-1"))
    assert not v.ok and "partition /dev/nvme0n1p1" in v.found


def test_disk_unused_then_mounted_swap_lvm_md(host, dl360):
    d = dl360.device_named("gluster-hdd-1")
    assert disks.disk_not_used_by_host(host.facts(), d).ok
    host.append("proc/mounts", "/dev/sda1 /srv/brick1 xfs rw,noatime,attr2,inode64 0 0\n")
    host.write("proc/swaps", host.read("proc/swaps") + "/dev/sda2 partition 1048572 0 -3\n")
    sda = host.path("sys/block/sda").resolve()
    for part, holder in (("sda1", None), ("sda2", None), ("sda3", "dm-2")):
        (sda / part / "holders").mkdir(parents=True)
        (sda / part / "partition").write_text(part[-1] + "\n")
        if holder:
            (sda / part / "holders" / holder).symlink_to("../../../../../../../../../../../virtual/block/" + holder)
    host.write("proc/mdstat", "Personalities : [raid1]\nmd127 : active raid1 sda2[0] sdb2[1]\n\nunused devices: <none>\n")
    v = disks.disk_not_used_by_host(host.facts(), d)
    assert not v.ok
    for text in ("/dev/sda1 is mounted on /srv/brick1", "/dev/sda2 is swap", "/dev/sda3 is held by dm-2",
                 "/dev/sda2 is a member of md127"):
        assert text in v.found


def test_disk_in_its_vm_only(host, dl360):
    v = disks.disk_assigned_to_vm(host.facts(), dl360.device_named("gluster-hdd-1"))
    assert v.ok and "z-gluster-1 has <disk type='block'> /dev/disk/by-id/wwn-0x5000c500b1c2d3e4" in v.found


def test_disk_attached_only_to_the_running_vm_fails(host, dl360):
    # virsh attach-disk z-gluster-1 ... --live: in the running VM, not in its persistent definition.
    host.replace(SDA_XML, "<source dev='/dev/disk/by-id/wwn-0x5000c500b1c2d3e4'/>",
                 "<source dev='/var/lib/libvirt/images/z-gluster-1-data.raw'/>")
    v = disks.disk_assigned_to_vm(host.facts(), dl360.device_named("gluster-hdd-1"))
    assert not v.ok and v.found == ("z-gluster-1 has /dev/disk/by-id/wwn-0x5000c500b1c2d3e4 only in the running "
                                    "VM's live definition (gone at its next start)")
    assert "virsh attach-disk z-gluster-1 /dev/disk/by-id/wwn-0x5000c500b1c2d3e4" in v.fix and "--config" in v.fix


def test_disk_by_kernel_name_is_unstable(host, dl360):
    host.replace(SDA_XML, "/dev/disk/by-id/wwn-0x5000c500b1c2d3e4", "/dev/sda")
    v = disks.disk_assigned_to_vm(host.facts(), dl360.device_named("gluster-hdd-1"))
    assert not v.ok and "uses /dev/sda, a name that can change at boot" in v.found


def test_disk_also_in_another_vm_by_an_alias(host, dl360):
    # scsi-3... is another name of the same disk: still the same disk in two VMs.
    host.replace("etc/libvirt/qemu/z-gluster-2.xml", "wwn-0x5000c500b1c2d3f5", "scsi-35000c500b1c2d3e4")
    f = host.facts()
    v = disks.disk_assigned_to_vm(f, dl360.device_named("gluster-hdd-1"))
    assert not v.ok and "z-gluster-2 also reaches /dev/sda through /dev/disk/by-id/scsi-35000c500b1c2d3e4" in v.found
    v2 = disks.disk_assigned_to_vm(f, dl360.device_named("gluster-hdd-2"))
    # Its running VM still has it (the definition was edited, the VM not restarted): gone at the next start.
    assert not v2.ok and "z-gluster-2 has /dev/disk/by-id/wwn-0x5000c500b1c2d3f5 only in the running VM's live" in v2.found


def test_disk_named_by_path_in_another_vm_is_the_same_disk(host, dl360):
    host.replace("etc/libvirt/qemu/z-gluster-2.xml", "/dev/disk/by-id/wwn-0x5000c500b1c2d3f5",
                 "/dev/disk/by-path/pci-0000:03:00.0-scsi-0:0:0:0")
    v = disks.disk_assigned_to_vm(host.facts(), dl360.device_named("gluster-hdd-1"))
    assert not v.ok and "z-gluster-2 also reaches /dev/sda through /dev/disk/by-path/" in v.found


def add_partition(host, disk: str, part: str) -> None:
    (host.path(f"sys/block/{disk}").resolve() / part).mkdir()
    (host.path(f"sys/block/{disk}").resolve() / part / "partition").write_text(part[-1] + "\n")
    host.path(f"dev/disk/by-id/wwn-0x5000c500b1c2d3e4-{part.replace(disk, 'part')}").symlink_to(f"../../{part}")


def test_a_partition_of_the_disk_in_another_vm(host, dl360):
    add_partition(host, "sda", "sda1")
    host.replace("etc/libvirt/qemu/z-gluster-2.xml", "wwn-0x5000c500b1c2d3f5", "wwn-0x5000c500b1c2d3e4-part1")
    v = disks.disk_assigned_to_vm(host.facts(), dl360.device_named("gluster-hdd-1"))
    assert not v.ok and "z-gluster-2 also reaches /dev/sda through /dev/disk/by-id/wwn-0x5000c500b1c2d3e4-part1" in v.found
    assert "virsh detach-disk z-gluster-2 /dev/disk/by-id/wwn-0x5000c500b1c2d3e4-part1 --config" in v.fix


def test_the_disk_as_a_file_source_in_another_vm(host, dl360):
    host.replace("etc/libvirt/qemu/z-ceph-2.xml", "/var/lib/libvirt/images/z-ceph-2.qcow2", "/dev/sda")
    v = disks.disk_assigned_to_vm(host.facts(), dl360.device_named("gluster-hdd-1"))
    assert not v.ok and "z-ceph-2 also reaches /dev/sda through /dev/sda" in v.found


def test_the_controller_of_the_disk_passed_to_another_vm(host, dl360):
    host.replace("etc/libvirt/qemu/z-ceph-3.xml", "bus='0x08' slot='0x00'", "bus='0x03' slot='0x00'")
    f = host.facts()
    for name in ("gluster-hdd-1", "gluster-hdd-2"):
        v = disks.disk_assigned_to_vm(f, dl360.device_named(name))
        assert not v.ok and "z-ceph-3 also reaches" in v.found and "<hostdev> 0000:03:00.0 (the controller" in v.found
        assert "virsh detach-device z-ceph-3 <hostdev-0000:03:00.0.xml> --config" in v.fix


def test_disk_by_uuid_is_not_a_stable_name(host, dl360):
    host.replace(SDA_XML, "/dev/disk/by-id/wwn-0x5000c500b1c2d3e4", "/dev/disk/by-uuid/5a7c9e1f-3b5d-4f60-8a2c-4e6a8c0e2f41")
    v = disks.disk_assigned_to_vm(host.facts(), dl360.device_named("gluster-hdd-1"))
    assert not v.ok and "when the disk is reformatted" in v.found


def test_disk_in_fstab_or_zfs_pool(host, dl360):
    d = dl360.device_named("gluster-hdd-1")
    host.append("etc/fstab", "UUID=5a7c9e1f-3b5d-4f60-8a2c-4e6a8c0e2f41 /srv/old xfs defaults,nofail 0 0\n")
    v = disks.disk_not_used_by_host(host.facts(), d)
    assert not v.ok and "/etc/fstab lists UUID=5a7c9e1f-3b5d-4f60-8a2c-4e6a8c0e2f41 (/srv/old)" in v.found
    host.write("etc/fstab", "")
    host.replace("run/udev/data/b8:0", "ID_FS_TYPE=xfs", "ID_FS_TYPE=zfs_member\nE:ID_FS_LABEL=tank")
    assert disks.disk_not_used_by_host(host.facts(), d).ok  # a pool nobody imported: a note at most
    host.append("proc/mounts", "rpool/ROOT/pve-1 / zfs rw,relatime,xattr,noacl 0 0\n")
    assert disks.disk_not_used_by_host(host.facts(), d).ok  # the host's own pool is another one (TrueNAS-in-VM)
    host.append("proc/mounts", "tank/brick1 /tank/brick1 zfs rw,xattr,noacl 0 0\n")
    v = disks.disk_not_used_by_host(host.facts(), d)
    assert not v.ok and "member of ZFS pool tank, which this host has imported" in v.found


def test_noauto_fstab_entry_is_a_note(host, dl360):
    host.append("etc/fstab", "/dev/sda /srv/old xfs noauto,nofail 0 0\n")
    v = disks.disk_not_used_by_host(host.facts(), dl360.device_named("gluster-hdd-1"))
    assert v.ok and any("as noauto" in n for n in v.evidence)


def test_disk_in_no_vm(host, dl360):
    host.replace(SDA_XML, "<disk type='block' device='disk'>", "<disk type='file' device='disk'>")
    v = disks.disk_assigned_to_vm(host.facts(), dl360.device_named("gluster-hdd-1"))
    assert not v.ok and "virsh attach-disk z-gluster-1" in v.fix
