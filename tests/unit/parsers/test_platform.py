import pytest

from iommu_audit.parsers.platform import Region, cpus, platform

# What 5.x-6.x kernels print (iommu_group_show_resv_regions: "0x%016llx 0x%016llx %s\n").
HPE_NIC_GROUP = ["0x0000000079174000 0x0000000079176fff direct", "0x00000000fee00000 0x00000000feefffff msi"]


def test_rows_of_every_kind():
    p = platform([["resv", "7"], *[["resv", "7", line] for line in HPE_NIC_GROUP], ["resv", "3"],
                  ["numa", "0000:06:00.0", "0"], ["numa", "0000:81:00.0", "-1"], ["node", "0", "0-9,20-29"],
                  ["param", "vfio/parameters/enable_unsafe_noiommu_mode", "N"], ["missing", "sys/class/iommu"]])
    assert p.reserved == {"7": [Region(0x79174000, 0x79176FFF, "direct"), Region(0xFEE00000, 0xFEEFFFFF, "msi")],
                          "3": []}
    assert p.numa_node == {"0000:06:00.0": 0, "0000:81:00.0": -1}
    assert p.node_cpus == {0: "0-9,20-29"} and p.node_of_cpu(25) == 0 and p.node_of_cpu(15) is None
    assert p.params == {"vfio/parameters/enable_unsafe_noiommu_mode": "N"} and p.missing == ("sys/class/iommu",)
    assert str(p.reserved["7"][0]) == "[0x79174000-0x79176fff] direct"


def test_odd_lines_are_dropped_not_fatal():
    p = platform([["resv", "1", "garbage"], ["resv", "1", "0xzz 0x1 msi"], ["numa", "0000:00:00.0", "x"], ["bogus"]])
    assert p.reserved == {"1": []} and p.numa_node == {"0000:00:00.0": -1}


def test_cpu_lists():
    assert cpus("0-2,8") == {0, 1, 2, 8} and cpus("") == set() and cpus("0-3,^2") == {0, 1, 3}
    with pytest.raises(ValueError):
        cpus("zero")
