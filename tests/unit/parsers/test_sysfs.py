"""sysfs rows as the probe prints them from the DL360 Gen9 sample tree."""

from iommu_audit.parsers.sysfs import iommu_groups, network, pci_devices, pci_address_of


def test_pci_rows_from_the_sample(host):
    f = host.facts()
    nvme = f.pci["0000:06:00.0"]
    assert (nvme.id, nvme.class_code, nvme.driver, nvme.driver_override, nvme.iommu_group) == \
        ("144d:a808", "010802", "vfio-pci", "vfio-pci", "14")
    assert nvme.path.endswith("0000:05:08.0/0000:06:00.0") and nvme.kind == "NVMe controller"
    assert f.pci["0000:04:00.0"].is_bridge and not nvme.is_bridge
    assert f.pci["0000:00:00.0"].driver is None and f.pci["0000:00:00.0"].driver_override is None
    assert f.groups["7"] == ["0000:02:00.0", "0000:02:00.1", "0000:02:00.2", "0000:02:00.3"]
    assert f.group_types["14"] == "identity"
    assert f.nvme["0000:09:00.0"].serial == "S4EWNX0R712345F"
    assert f.slots == {"1": "0000:04:00", "2": "0000:0a:00"}
    assert f.network.nic_address["eno1"] == "0000:02:00.0" and f.network.default_route == ["eno1"]


def test_rows_tolerate_missing_fields_and_vmd_domains():
    d = pci_devices([["10000:e1:00.0", "0x8086", "0x0a54", "0x010802"]])
    assert d["10000:e1:00.0"].driver is None and d["10000:e1:00.0"].iommu_group is None
    assert pci_address_of("../devices/pci0000:00/0000:00:0e.0/pci10000:e0/10000:e0:06.0/10000:e1:00.0/nvme/nvme0") \
        == "10000:e1:00.0"


def test_groups_and_network_rows():
    members, types = iommu_groups([["3", "0000:00:03.0", "DMA"], ["3", "0000:02:00.0", "DMA"], ["4", "0000:00:1c.7"]])
    assert members == {"3": ["0000:00:03.0", "0000:02:00.0"], "4": ["0000:00:1c.7"]} and types == {"3": "DMA"}
    n = network([["dev", "eno1", "0000:02:00.0"], ["dev", "lo", ""], ["default", "eno1"], ["addr", "eno1", "192.0.2.10"]])
    assert n.nic_address == {"eno1": "0000:02:00.0"} and n.addresses == {"eno1": ["192.0.2.10"]}


def test_tcp_endpoints_v4_and_v6_and_stacked_interfaces():
    n = network([["tcp", "0A0200C0:0016"], ["tcp", "0000000000000000FFFF00000A0200C0:0016"],
                 ["tcp", "B80D0120000000000000000001000000:0016"], ["tcp", "garbage"],
                 ["dev", "eno1", "0000:02:00.0", "bond0 "], ["dev", "bond0", "", "vmbr0 "], ["dev", "vmbr0", ""]])
    assert n.tcp_local == [("192.0.2.10", 22), ("192.0.2.10", 22), ("2001:db8::1", 22)]
    assert n.stacked("eno1") == ["eno1", "bond0", "vmbr0"]
