from iommu_audit.parsers.modules import (driverctl_overrides, modprobe_lines, modprobe_vfio_ids, module_name,
                                         modules)


def test_module_names_from_paths():
    assert module_name("kernel/drivers/vfio/pci/vfio-pci.ko.zst") == "vfio_pci"
    assert module_name("vfio_iommu_type1") == "vfio_iommu_type1"


def test_loaded_builtin_and_on_disk():
    m = modules([["loaded", "vfio_pci"], ["builtin", "kernel/drivers/vfio/vfio.ko"],
                 ["file", "kernel/drivers/vfio/vfio_iommu_type1.ko.xz"], ["sysfs", "vfio_iommu_type1"]])
    assert m.active("vfio_pci") and m.active("vfio") and m.active("vfio_iommu_type1")
    assert not m.active("pci_stub") and "vfio_iommu_type1" in m.on_disk


def test_modprobe_options_with_continuation_and_comments():
    lines = modprobe_lines([("/etc/modprobe.d/vfio.conf",
                             "# GPU for the Windows VM\noptions vfio-pci ids=10de:1db6,10de:10f2 \\\n  disable_vga=1\n"
                             "softdep nvidia pre: vfio-pci\n")])
    ids = modprobe_vfio_ids(lines)
    assert [i for i, _ in ids] == ["10de:1db6", "10de:10f2"]
    assert "disable_vga=1" in str(ids[0][1])
    assert lines[1].words == ("softdep", "nvidia", "pre:", "vfio-pci")


def test_driverctl_files():
    assert driverctl_overrides([["pci-0000:06:00.0", "vfio-pci"], ["usb-1-1", "x"], ["pci-bogus", "vfio-pci"]]) == \
        {"0000:06:00.0": "vfio-pci"}
