"""Each PCI device of the profile: present, free, isolated, on vfio-pci, and kept there."""

import pytest

from iommu_audit.rules import devices


@pytest.mark.requirement("device-present")
def test_device_present(facts, device, profile, audit):
    audit(devices.device_present(facts, device, profile))


@pytest.mark.requirement("device-not-used-by-host")
def test_device_not_used_by_host(facts, device, audit):
    audit(devices.device_not_used_by_host(facts, device))


@pytest.mark.requirement("iommu-group-clean")
def test_iommu_group_clean(facts, device, profile, audit):
    audit(devices.iommu_group_clean(facts, device, profile))


@pytest.mark.requirement("bound-to-vfio")
def test_bound_to_vfio(facts, device, audit):
    audit(devices.bound_to_vfio(facts, device))


@pytest.mark.requirement("vfio-binding-persistent")
def test_vfio_binding_persistent(facts, device, audit):
    audit(devices.vfio_binding_persistent(facts, device))


@pytest.mark.requirement("host-device-kept")
def test_host_device_kept(facts, host_device, audit):
    audit(devices.host_device_kept(facts, host_device))
