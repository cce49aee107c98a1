"""libvirt: each device and disk in its VM, and in no other."""

import pytest

from iommu_audit.rules import disks, vms


@pytest.mark.requirement("assigned-to-vm")
def test_assigned_to_vm(facts, device, audit):
    audit(vms.assigned_to_vm(facts, device))


@pytest.mark.requirement("disk-assigned-to-vm")
def test_disk_assigned_to_vm(facts, disk, audit):
    audit(disks.disk_assigned_to_vm(facts, disk))
