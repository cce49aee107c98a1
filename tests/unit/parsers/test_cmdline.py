from iommu_audit.parsers.cmdline import (amd_iommu_invalid, effective, grub_cmdline, has, intel_iommu_state, iommu_off, params,
                                         values, vfio_pci_ids)

UBUNTU = "BOOT_IMAGE=/vmlinuz-5.15.0-91-generic root=/dev/mapper/vg0-root ro quiet splash intel_iommu=on iommu=pt vt.handoff=7"


def test_real_ubuntu_cmdline():
    ps = params(UBUNTU)
    assert ("intel_iommu", "on") in ps and ("ro", None) in ps
    assert intel_iommu_state(ps) == ("on", "intel_iommu=on")
    assert has(ps, "iommu=pt") and not has(ps, "iommu=off") and not iommu_off(ps)


def test_quotes_and_init_arguments():
    ps = params('root=/dev/sda1 "acpi_osi=!Windows 2013" -- intel_iommu=on')
    assert ("acpi_osi", "!Windows 2013") in ps
    assert intel_iommu_state(ps) == (None, "")  # after "--" it belongs to init


def test_comma_options_and_last_occurrence():
    assert intel_iommu_state(params("intel_iommu=on,sm_on,igfx_off"))[0] == "on"
    assert intel_iommu_state(params("intel_iommu=on intel_iommu=igfx_off,off"))[0] == "off"
    assert intel_iommu_state(params("intel_iommu=sm_on"))[0] is None


def test_module_parameters_treat_dash_and_underscore_alike():
    ps = params("vfio_pci.ids=144d:a808,10de:1db6:10de:12a2 vfio-pci.disable_vga=1")
    assert vfio_pci_ids(ps) == ["144d:a808", "10de:1db6"]
    assert values(ps, "vfio-pci.disable_vga") == ["1"]
    # __setup() names are exact: intel-iommu=on is not intel_iommu=on.
    assert intel_iommu_state(params("intel-iommu=on"))[0] is None


def test_amd_options():
    assert amd_iommu_invalid(params("amd_iommu=on iommu=pt")) == ["on"]
    assert amd_iommu_invalid(params("amd_iommu=force_isolation,pgtbl_v2")) == []
    assert iommu_off(params("amd_iommu=fullflush,off")) == "amd_iommu=fullflush,off"


def test_grub_default_then_snippets():
    files = [("/etc/default/grub", 'GRUB_CMDLINE_LINUX_DEFAULT="quiet splash"\nGRUB_CMDLINE_LINUX=""\n'
                                   '#GRUB_CMDLINE_LINUX_DEFAULT="intel_iommu=on"\n'),
             ("/etc/default/grub.d/iommu.cfg", 'GRUB_CMDLINE_LINUX_DEFAULT="${GRUB_CMDLINE_LINUX_DEFAULT} intel_iommu=on"\n'),
             ("/etc/default/grub.d/console.cfg", "export GRUB_CMDLINE_LINUX='console=ttyS0,115200n8'\n")]
    assert grub_cmdline(files) == "console=ttyS0,115200n8 quiet splash intel_iommu=on"


def test_grub_with_unbalanced_quote_keeps_the_raw_text():
    assert "intel_iommu=on" in grub_cmdline([("/etc/default/grub", 'GRUB_CMDLINE_LINUX_DEFAULT="intel_iommu=on\n')])


def test_the_last_value_wins():
    # iommu_setup() handles each occurrence in turn: nopt undoes pt.
    assert not has(params("iommu=pt iommu=nopt"), "iommu=pt") and has(params("iommu=nopt iommu=pt"), "iommu=pt")
    assert has(params("iommu=pt iommu=nomerge"), "iommu=pt")  # options of other pairs leave pt alone
    assert has(params("intel_iommu=on,igfx_off"), "intel_iommu=on,igfx_off")
    assert not has(params("intel_iommu=on intel_iommu=off"), "intel_iommu=on")
    # Plain key=value (module parameters, __setup strings): only the last occurrence counts.
    assert not has(params("pci=noaer pci=realloc"), "pci=noaer") and has(params("pci=noaer pci=realloc"), "pci=realloc")
    assert effective(params("vfio_pci.disable_vga=1 vfio-pci.disable_vga=0"), "vfio-pci.disable_vga") == "0"
    assert vfio_pci_ids(params("vfio-pci.ids=144d:a808 vfio-pci.ids=10de:1db6")) == ["10de:1db6"]
    assert has(params("quiet"), "quiet") and not has(params("quiet"), "splash")
