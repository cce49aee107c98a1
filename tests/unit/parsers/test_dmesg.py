"""The kernel-log classifier on captures from several kernel generations (tests/data/dmesg)."""

from pathlib import Path

import pytest

from iommu_audit.parsers.dmesg import boot_messages_present, classify

DATA = Path(__file__).resolve().parents[2] / "data" / "dmesg"


def kinds(name: str) -> set[str]:
    return {f.kind for f in classify((DATA / name).read_text(errors="replace").splitlines())}


@pytest.mark.parametrize("name, present, absent", [
    ("intel-3.x-old.txt", {"acpi_dmar", "intel_enabled", "vtd_active", "ir_enabled"}, {"intel_disabled"}),
    ("intel-hpe-dl360g9-4.15.txt", {"acpi_dmar", "intel_enabled", "vtd_active", "ir_enabled", "group_added",
                                    "rmrr_ineligible"}, {"firmware_bug"}),
    ("intel-5.15-ubuntu-ok.txt", {"acpi_dmar", "intel_enabled", "ir_enabled", "default_domain", "group_added"},
     {"rmrr_ineligible", "firmware_bug", "unsafe_interrupts"}),
    # Default-on kernel: IOMMU active without "DMAR: IOMMU enabled".
    ("intel-6.x-default-on.txt", {"acpi_dmar", "group_added", "ir_enabled"}, {"intel_enabled"}),
    ("intel-off.txt", {"intel_disabled"}, {"intel_enabled", "group_added"}),
    # VT-d off in the BIOS: the command line still makes the kernel print "IOMMU enabled", nothing follows.
    ("intel-no-firmware.txt", {"intel_enabled"}, {"acpi_dmar", "vtd_active", "group_added"}),
    ("intel-broken-dmar.txt", {"firmware_bug"}, set()),
    ("intel-broken-rmrr.txt", {"firmware_bug"}, set()),
    ("unsafe-interrupts.txt", {"unsafe_interrupts"}, set()),
    ("amd-4.15-old.txt", {"acpi_ivrs", "amd_found", "ir_enabled"}, {"acpi_dmar"}),
    ("amd-5.4.txt", {"acpi_ivrs", "amd_found", "ir_enabled", "group_added"}, set()),
    ("amd-6.x.txt", {"acpi_ivrs", "amd_found", "ir_enabled", "default_domain"}, set()),
    ("amd-invalid-on.txt", {"amd_unknown_option"}, set()),
    ("amd-off.txt", {"acpi_ivrs"}, {"amd_found", "group_added", "ir_enabled"}),
    ("rotated.txt", set(), {"acpi_dmar", "intel_enabled", "group_added"}),
])
def test_kernel_generations(name, present, absent):
    found = kinds(name)
    assert present <= found, f"missing {present - found}"
    assert not (absent & found), f"unexpected {absent & found}"


def test_rmrr_blocker_names_the_device():
    lines = (DATA / "intel-hpe-dl360g9-4.15.txt").read_text(errors="replace").splitlines()
    rmrr = [f for f in classify(lines) if f.kind == "rmrr_ineligible"]
    assert [f.address for f in rmrr] == ["0000:03:00.0"]


def test_newer_kernels_rmrr_wording_and_prefix():
    lines = ["[  80.1] vfio-pci 0000:03:00.0: DMAR: Device is ineligible for IOMMU domain attach due to platform "
             "RMRR requirement.  Contact your platform vendor.",
             "[  80.2] vfio-pci 0000:04:00.0: Firmware has requested this device have a 1:1 IOMMU mapping, rejecting "
             "configuring the device without a 1:1 mapping. Contact your platform vendor."]
    assert [(f.kind, f.address) for f in classify(lines)] == [
        ("rmrr_ineligible", "0000:03:00.0"), ("rmrr_ineligible", "0000:04:00.0")]


def test_non_zero_pci_domain_is_kept():
    f = classify(["[    1.0] pci 0001:c0:00.2: AMD-Vi: Found IOMMU cap 0x40"])
    assert f[0].kind == "amd_found" and f[0].address == "0001:c0:00.2"


@pytest.mark.parametrize("name, expected", [("intel-5.15-ubuntu-ok.txt", True), ("amd-4.15-old.txt", True),
                                            ("rotated.txt", False)])
def test_boot_messages_present(name, expected):
    first = (DATA / name).read_text(errors="replace").splitlines()[0]
    assert boot_messages_present(first) is expected


def test_4x_identity_map_lines_name_each_rmrr_device():
    # NICs, Smart Array, iLO, USB (EHCI) and the LPC bridge's 0-16MiB map; "Hardware identity mapping"
    # (iommu=pt) is not an RMRR.
    lines = (DATA / "intel-hpe-dl360g9-4.15.txt").read_text(errors="replace").splitlines()
    mapped = [f.address for f in classify(lines) if f.kind == "rmrr_identity_map"]
    assert mapped == ["0000:01:00.0", "0000:01:00.2", "0000:02:00.0", "0000:02:00.1", "0000:02:00.2",
                      "0000:02:00.3", "0000:03:00.0", "0000:00:1a.0", "0000:00:1d.0", "0000:00:1f.0"]


def test_3x_and_hw_passthrough_identity_map_forms():
    f = classify(["[    1.523079] IOMMU: Setting identity map for device 0000:00:1d.0 [0x7f258000 - 0x7f266fff]",
                  "[    0.995586] DMAR: Ignoring identity map for HW passthrough device 0000:00:1f.0 [0x0 - 0xffffff]"])
    assert [(x.kind, x.address) for x in f] == [("rmrr_identity_map", "0000:00:1d.0"),
                                                 ("rmrr_identity_map", "0000:00:1f.0")]


@pytest.mark.parametrize("line, kind", [
    # 3.x-4.x: inside a WARN splat, no prefix, no [Firmware Bug].
    ("[    0.000000] Your BIOS is broken; DMAR reported at address 0!", "firmware_bug"),
    ("[    0.000000] Your BIOS is broken; DMAR reported at address fed90000 returns all ones!", "firmware_bug"),
    ("[    0.000000] BIOS vendor: Hewlett-Packard; Ver: 786F1 v01.32; Product Version: ", "bios_vendor"),
    ("               BIOS vendor: Dell Inc.; Ver: 1.1.1; Product Version: ", "bios_vendor"),
    ("[    0.103707] DMAR: DRHD base: 0x00000000000000 flags: 0x1", "firmware_bug"),
    ("[    0.000000] [Firmware Bug]: AMD-Vi: IOAPIC[9] not in IVRS table", "firmware_bug"),
    ("[    0.541210] AMD-Vi: [Firmware Bug]: : IOAPIC[4] not in IVRS table", "firmware_bug"),
    ("[    0.541215] AMD-Vi: Disabling interrupt remapping", "firmware_bug"),
])
def test_broken_firmware_table_lines(line, kind):
    assert [f.kind for f in classify([line])] == [kind]


def test_healthy_drhd_is_not_a_firmware_bug():
    assert [f.kind for f in classify(["[    0.288166] DMAR: DRHD base: 0x000000fbffc000 flags: 0x0"])] == []


def test_long_lines_are_capped_so_parsing_stays_linear():
    import time
    start = time.monotonic()
    found = classify(["[    1.0] iommu: " + "[Firmware Bug] " * 11_000, "[    2.0] DMAR: IOMMU enabled"])
    assert time.monotonic() - start < 2  # ~55 s uncapped
    assert [f.kind for f in found] == ["intel_enabled"]
