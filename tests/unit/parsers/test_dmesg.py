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
