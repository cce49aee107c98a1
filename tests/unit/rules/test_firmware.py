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


# --- no-rmrr-lockout ---------------------------------------------------------------------------

from pathlib import Path  # noqa: E402

from iommu_audit.profile import Device  # noqa: E402
from iommu_audit.rules.firmware import no_rmrr_lockout  # noqa: E402

DMESG_4X = Path(__file__).resolve().parents[2] / "data" / "dmesg" / "intel-hpe-dl360g9-4.15.txt"
NVME1 = Device("ceph-nvme-1", "144d:a808", "z-ceph-1", address="0000:06:00.0")
NIC = Device("nic-1", "14e4:1657", "z-net", address="0000:02:00.0")
SMART_ARRAY = Device("p440ar", "103c:3239", "z-gluster-1", address="0000:03:00.0")
ILO_USB = Device("ilo-usb", "103c:3300", "z-usb", address="0000:01:00.4")
MSI = "0x00000000fee00000 0x00000000feefffff msi\n"


def test_sample_nvme_groups_hold_only_the_msi_region(host):
    f = host.facts()
    v = no_rmrr_lockout(f, NVME1)
    assert v.ok and "group 14" in v.found and "msi" in v.found
    assert [r.type for r in f.platform.reserved["14"]] == ["msi"]


def test_direct_region_in_the_group_fails_before_any_vm_starts(host):
    host.write("sys/kernel/iommu_groups/14/reserved_regions", "0x00000000791f4000 0x00000000791f7fff direct\n" + MSI)
    v = no_rmrr_lockout(host.facts(), NVME1)
    assert not v.ok and "group 14 of 0000:06:00.0" in v.found and "[0x791f4000-0x791f7fff] direct" in v.found
    assert "conrep" in v.fix and "HPE Shared Memory features" in v.fix
    assert any("/sys/kernel/iommu_groups/14/reserved_regions" in e for e in v.evidence)


def test_sample_nic_and_smart_array_groups_are_locked(host):
    # The sample's embedded NICs and Smart Array carry HPE's RMRRs: not profiled, but locked.
    f = host.facts()
    assert not no_rmrr_lockout(f, NIC).ok and not no_rmrr_lockout(f, SMART_ARRAY).ok


def test_relaxable_msi_and_reserved_regions_do_not_block(host):
    # Group 5 (iLO, VGA, USB) holds a direct-relaxable region in the sample.
    f = host.facts()
    assert [r.type for r in f.platform.reserved["5"]] == ["direct-relaxable", "msi"]
    assert no_rmrr_lockout(f, ILO_USB).ok
    host.write("sys/kernel/iommu_groups/14/reserved_regions",
               "0x00000000000a0000 0x00000000000bffff direct-relaxable\n0x00000000fd000000 0x00000000ffffffff reserved\n" + MSI)
    assert no_rmrr_lockout(host.facts(), NVME1).ok


def test_direct_region_of_a_usb_only_group_is_relaxed(host):
    # 4.11-5.2 label USB RMRRs "direct"; device_is_rmrr_locked() still exempts USB and graphics.
    host.move_to_group("0000:01:00.4", "40")
    host.write("sys/kernel/iommu_groups/40/reserved_regions", "0x00000000791f4000 0x00000000791f7fff direct\n" + MSI)
    assert no_rmrr_lockout(host.facts(), ILO_USB).ok


def _kernel_4x(host):
    """The sample as a kernel before 4.11 shows it: no reserved_regions, RMRR lines in the boot log."""
    for g in host.path("sys/kernel/iommu_groups").iterdir():
        (g / "reserved_regions").unlink()
    lines = [line for line in DMESG_4X.read_text(errors="replace").splitlines(keepends=True)
             if "identity map" in line or "Setting RMRR" in line or "unity mapping" in line]
    host.append("dmesg", "".join(lines) + "[    4.572021] DMAR: Setting identity map for device 0000:01:00.4 "
                "[0x791f4000 - 0x791f7fff]\n")


def test_4x_identity_map_lines_lock_nics_and_storage_not_usb(host):
    _kernel_4x(host)
    f = host.facts()
    assert f.platform.reserved == {}
    for dev in (NIC, SMART_ARRAY):
        v = no_rmrr_lockout(f, dev)
        assert not v.ok and "identity map at boot" in v.found and dev.address in v.evidence[0]
    v = no_rmrr_lockout(f, ILO_USB)
    assert v.ok and "USB/graphics RMRR" in v.found
    v = no_rmrr_lockout(f, NVME1)
    assert v.ok and "no RMRR identity map for 0000:06:00.0 in the boot log" in v.found


def test_hw_passthrough_variant_of_the_identity_map_line_counts(host):
    _kernel_4x(host)
    host.append("dmesg", "[    4.600000] DMAR: Ignoring identity map for HW passthrough device 0000:06:00.0 "
                "[0x791f4000 - 0x791f7fff]\n")
    assert not no_rmrr_lockout(host.facts(), NVME1).ok


def test_old_kernel_copy_without_boot_log_cannot_pass(host):
    _kernel_4x(host)
    host.write("dmesg", "[1834567.123456] perf: interrupt took too long (2503 > 2500)\n")
    v = no_rmrr_lockout(host.facts(), NVME1)
    assert not v.ok and "cannot tell" in v.found and "the copy has no sys/kernel/iommu_groups/14/reserved_regions" in v.found


def test_refusal_in_a_log_that_does_not_start_at_boot_fails_even_for_an_absent_device(host):
    # The device was pulled since the VM failed to start; the log no longer starts at boot.
    host.write("dmesg", "[1834567.123456] perf: interrupt took too long (2503 > 2500)\n"
               "[1835003.106220] vfio-pci 0000:06:00.0: DMAR: Device is ineligible for IOMMU domain attach due to "
               "platform RMRR requirement.  Contact your platform vendor.\n")
    host.remove("sys/bus/pci/devices/0000:06:00.0")
    f = host.facts()
    assert not f.boot_log and "0000:06:00.0" not in f.pci
    v = no_rmrr_lockout(f, NVME1)
    assert not v.ok and "the kernel refused 0000:06:00.0" in v.found and "ineligible" in v.evidence[0]


def test_63_refusal_wording_and_other_devices(host):
    line = ("[  98.100000] vfio-pci 0000:07:00.0: Firmware has requested this device have a 1:1 IOMMU mapping, "
            "rejecting configuring the device without a 1:1 mapping. Contact your platform vendor.\n")
    host.append("dmesg", line)
    f = host.facts()
    assert not no_rmrr_lockout(f, replace(NVME1, address="0000:07:00.0")).ok
    assert no_rmrr_lockout(f, NVME1).ok  # a line naming another device is not about this one


def test_absent_device_without_any_line_is_left_to_device_present(host):
    v = no_rmrr_lockout(host.facts(), replace(NVME1, address="0000:42:00.0"))
    assert v.skip and "device-present" in v.skip
