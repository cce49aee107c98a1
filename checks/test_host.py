"""The host can be read at all: every other check depends on it."""

import pytest

from iommu_audit.plugin import gathered_verdict


@pytest.mark.requirement("facts-gathered")
def test_facts_gathered(audit_state, target, audit):
    audit(gathered_verdict(audit_state, target))
