from iommu_audit.parsers.modules import (Binder, binders, driverctl_appliers, driverctl_overrides, modprobe_lines, modprobe_vfio_ids, module_name,
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


def test_binders_first_directory_wins():
    rows = [["/etc/udev/rules.d/05-driverctl.rules", "../../../dev/null", "0"],  # as a --sysroot copy shows it
            ["/lib/udev/rules.d/05-driverctl.rules", "", "1"],
            ["/lib/systemd/system/driverctl@.service", "", "3"], ["garbage"]]
    files = binders(rows)
    assert files[0] == Binder("/etc/udev/rules.d/05-driverctl.rules", "../../../dev/null", 0)
    ok, bad = driverctl_appliers(files)
    assert ok == [] and bad[0] == "driverctl: /etc/udev/rules.d/05-driverctl.rules masks it (a link to /dev/null)"
    assert "89-iommu-audit-vfio.rules is in none of" in bad[1]
    ok, _ = driverctl_appliers(files[1:])
    assert ok == ["driverctl's /lib/udev/rules.d/05-driverctl.rules and /lib/systemd/system/driverctl@.service"]


def test_driverctl_needs_both_rule_and_unit():
    ok, bad = driverctl_appliers(binders([["/usr/lib/udev/rules.d/05-driverctl.rules", "", "1"]]))
    assert ok == [] and "driverctl@.service is in none of" in bad[0]
    ok, _ = driverctl_appliers(binders([["/etc/udev/rules.d/89-iommu-audit-vfio.rules", "", "1"]]))
    assert ok == ["/etc/udev/rules.d/89-iommu-audit-vfio.rules"]
