"""The running kernel and its boot configuration."""

import pytest

from iommu_audit.rules import kernel


@pytest.mark.requirement("cmdline-iommu")
def test_cmdline_iommu(facts, profile, audit):
    audit(kernel.cmdline_iommu(facts, profile))


@pytest.mark.requirement("cmdline-no-acs-override")
def test_cmdline_no_acs_override(facts, profile, audit):
    audit(kernel.cmdline_no_acs_override(facts, profile))


@pytest.mark.requirement("cmdline-persistent")
def test_cmdline_persistent(facts, profile, audit):
    audit(kernel.cmdline_persistent(facts, profile))


@pytest.mark.requirement("iommu-active")
def test_iommu_active(facts, profile, audit):
    audit(kernel.iommu_active(facts, profile))


@pytest.mark.requirement("interrupt-remapping")
def test_interrupt_remapping(facts, profile, audit):
    audit(kernel.interrupt_remapping(facts, profile))


@pytest.mark.requirement("vfio-modules")
def test_vfio_modules(facts, profile, audit):
    audit(kernel.vfio_modules(facts, profile))


@pytest.mark.requirement("no-known-blockers")
def test_no_known_blockers(facts, profile, audit):
    audit(kernel.no_known_blockers(facts, profile))


@pytest.mark.requirement("vfio-ids-scope")
def test_vfio_ids_scope(facts, profile, audit):
    audit(kernel.vfio_ids_scope(facts, profile))
