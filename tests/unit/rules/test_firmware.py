from dataclasses import replace

from iommu_audit.rules.firmware import firmware_iommu


def test_dmar_table_present_passes(host, dl360):
    v = firmware_iommu(host.facts(), dl360)
    assert v.ok and "ACPI DMAR table present" in v.found
    assert any("ACPI: DMAR 0x" in e for e in v.evidence)


def test_vtd_off_in_bios_fails_with_the_hpe_menu_path(host, dl360):
    host.remove("sys/firmware/acpi/tables/DMAR")
    v = firmware_iommu(host.facts(), dl360)
    assert not v.ok
    assert "no ACPI DMAR table" in v.found and "SSDT" in v.found
    assert "Virtualization Options" in v.fix and "VT-d" in v.fix


def test_amd_profile_wants_ivrs(host, dl360):
    amd = replace(dl360, cpu_vendor="amd", firmware_hint="")
    host.replace("proc/cpuinfo", "GenuineIntel", "AuthenticAMD").remove("sys/firmware/acpi/tables/DMAR")
    v = firmware_iommu(host.facts(), amd)
    assert not v.ok and "no ACPI IVRS table" in v.found and "AMD-Vi" in v.fix
    host.write("sys/firmware/acpi/tables/IVRS", "")
    assert firmware_iommu(host.facts(), amd).ok


def test_profile_for_another_platform_fails(host, dl360):
    host.replace("proc/cpuinfo", "GenuineIntel", "AuthenticAMD")
    v = firmware_iommu(host.facts(), dl360)
    assert not v.ok and "host CPU is amd" in v.found


def test_unreadable_acpi_tables_say_so(host, dl360):
    host.remove("sys/firmware/acpi/tables")
    v = firmware_iommu(host.facts(), dl360)
    assert not v.ok and "none readable" in v.found
