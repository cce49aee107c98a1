"""Firmware: VT-d / AMD-Vi switched on (ACPI DMAR / IVRS table)."""

import pytest

from iommu_audit.rules import firmware


@pytest.mark.requirement("firmware-iommu")
def test_firmware_iommu(facts, profile, audit):
    audit(firmware.firmware_iommu(facts, profile))
