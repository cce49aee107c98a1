"""No drift since go-live (--baseline): the host, each device and each disk of its profile.

Collected only with --baseline (see iommu_audit/drift.py).
"""

import pytest

from iommu_audit import drift


@pytest.fixture(scope="module")
def baseline(request, target):
    b = request.config.stash[drift.BASELINE]
    return b.of(target.name)


@pytest.mark.requirement("no-drift")
def test_no_drift(request, facts, target, baseline, audit):
    if baseline is None:
        b = request.config.stash[drift.BASELINE]
        audit(drift.missing_baseline(target.name, b.path, sorted(b.hosts)))
    audit(drift.host_drift(baseline[0], facts, baseline[1]))


@pytest.mark.requirement("no-drift")
def test_device_no_drift(facts, device, baseline, audit):
    if baseline is None:
        pytest.skip("no baseline for this host: see test_no_drift")
    audit(drift.device_drift(baseline[0], facts, device, baseline[1]))


@pytest.mark.requirement("no-drift")
def test_disk_no_drift(facts, disk, baseline, audit):
    if baseline is None:
        pytest.skip("no baseline for this host: see test_no_drift")
    audit(drift.disk_drift(baseline[0], facts, disk, baseline[1]))


@pytest.mark.requirement("no-drift")
def test_host_device_no_drift(facts, host_device, baseline, audit):
    if baseline is None:
        pytest.skip("no baseline for this host: see test_no_drift")
    audit(drift.device_drift(baseline[0], facts, host_device, baseline[1]))
