from iommu_audit.parsers.storage import block_devices, btrfs_members, md_members, mounts, swaps


def test_block_devices_map_to_their_controller():
    rows = [["disk", "nvme0n1", "../devices/pci0000:00/0000:00:02.0/0000:04:00.0/0000:05:11.0/0000:09:00.0/nvme/nvme0/nvme0n1", ""],
            ["part", "nvme0n1p3", "nvme0n1", "dm-0 dm-1 "],
            ["disk", "sda", "../devices/pci0000:00/0000:00:01.0/0000:03:00.0/host0/target0:0:0/0:0:0:0/block/sda", ""],
            ["disk", "dm-0", "../devices/virtual/block/dm-0", ""]]
    b = block_devices(rows)
    assert b["nvme0n1"].pci_address == "0000:09:00.0" and b["nvme0n1p3"].pci_address == "0000:09:00.0"
    assert b["nvme0n1p3"].disk == "nvme0n1" and b["nvme0n1p3"].holders == ("dm-0", "dm-1")
    assert b["sda"].pci_address == "0000:03:00.0" and b["dm-0"].pci_address is None


def test_mounts_unescape_spaces():
    m = mounts("/dev/sdb1 /srv/my\\040data ext4 rw,relatime 0 0\n")
    assert (m[0].source, m[0].target, m[0].fstype) == ("/dev/sdb1", "/srv/my data", "ext4")


def test_swaps_and_mdstat():
    assert swaps("Filename\tType\tSize\tUsed\tPriority\n/dev/dm-1  partition\t8388604\t0\t-2\n") == ["/dev/dm-1"]
    mdstat = ("Personalities : [raid1] [linear]\nmd0 : active raid1 sdc1[1] sdb1[0]\n"
              "      976630464 blocks super 1.2 [2/2] [UU]\n\nunused devices: <none>\n")
    assert md_members(mdstat) == {"sdc1": "md0", "sdb1": "md0"}


def test_multipath_namespace_maps_to_every_controller_of_its_subsystem():
    # nvme_core.multipath=Y: the namespace is virtual; the subsystem links its controllers.
    rows = [["via", "nvme1n1", "../../../pci0000:00/0000:00:10.0/nvme/nvme0"],
            ["via", "nvme1n1", "../../../pci0000:00/0000:00:11.0/nvme/nvme1"],
            ["disk", "nvme1n1", "../devices/virtual/nvme-subsystem/nvme-subsys1/nvme1n1", "", "", ""],
            ["part", "nvme1n1p1", "nvme1n1", "", "ext4", ""],
            ["disk", "sda", "../devices/pci0000:00/0000:00:1f.2/ata1/host0/target0:0:0/0:0:0:0/block/sda", "", "", ""]]
    block = block_devices(rows)
    assert block["nvme1n1"].controllers == ("0000:00:10.0", "0000:00:11.0")
    assert block["nvme1n1p1"].controllers == ("0000:00:10.0", "0000:00:11.0")
    assert block["sda"].controllers == ("0000:00:1f.2",) and block["sda"].pci_address == "0000:00:1f.2"


def test_btrfs_members_by_filesystem():
    rows = [["btrfs", "5a1c", "sda"], ["btrfs", "5a1c", "sdb"], ["btrfs", "77ee", "nvme0n1p2"], ["disk", "sda", "x"]]
    assert btrfs_members(rows) == {"5a1c": ["sda", "sdb"], "77ee": ["nvme0n1p2"]}
