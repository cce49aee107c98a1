"""Firmware: VT-d / AMD-Vi switched on (ACPI DMAR / IVRS table), no RMRR on a passed device."""

import pytest

from iommu_audit.rules import firmware, overrides, placement


@pytest.mark.requirement("firmware-iommu")
def test_firmware_iommu(facts, profile, audit):
    audit(firmware.firmware_iommu(facts, profile))


@pytest.mark.requirement("no-unsafe-overrides")
def test_no_unsafe_overrides(facts, profile, audit):
    audit(overrides.no_unsafe_overrides(facts, profile))


@pytest.mark.requirement("cmdline-no-foreign-iommu-args")
def test_cmdline_no_foreign_iommu_args(facts, profile, audit):
    audit(overrides.cmdline_no_foreign_iommu_args(facts, profile))


@pytest.mark.requirement("no-rmrr-lockout")
def test_no_rmrr_lockout(facts, device, audit):
    audit(firmware.no_rmrr_lockout(facts, device))


@pytest.mark.requirement("numa-placement")
def test_numa_placement(facts, device, profile, audit):
    audit(placement.numa_placement(facts, device, profile))
