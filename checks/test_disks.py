"""Whole disks passed to VMs: present by stable id and untouched by the host."""

import pytest

from iommu_audit.rules import disks


@pytest.mark.requirement("disk-present")
def test_disk_present(facts, disk, audit):
    audit(disks.disk_present(facts, disk))


@pytest.mark.requirement("disk-not-used-by-host")
def test_disk_not_used_by_host(facts, disk, audit):
    audit(disks.disk_not_used_by_host(facts, disk))
