"""Fixtures of the checks: hosts and profile subjects as parameters, facts, and `audit`.

Test ids read as requirement[host-device], e.g. test_bound_to_vfio[node1-ceph-nvme-1].
"""

import pytest

from iommu_audit.plugin import Judge, state_of


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    state = state_of(metafunc.config)
    names = metafunc.fixturenames
    if "target" in names:
        # Module scope keeps each file's checks together; facts are cached per host anyway.
        metafunc.parametrize("target", state.targets, ids=[t.name for t in state.targets], scope="module")
    subjects = {"device": state.profile.passthrough_devices, "host_device": state.profile.host_devices,
                "disk": state.profile.disks}
    for name, items in subjects.items():
        if name in names:
            metafunc.parametrize(name, items, ids=[i.name for i in items])


@pytest.fixture(scope="session")
def audit_state(request):
    return state_of(request.config)


@pytest.fixture(scope="session")
def profile(audit_state):
    return audit_state.profile


@pytest.fixture(scope="module")
def facts(audit_state, target):
    audit_state.gather(target)
    if target.name in audit_state.errors:
        pytest.skip(f"no facts from {target.name}: see test_facts_gathered[{target.name}]")
    return audit_state.facts[target.name]


@pytest.fixture
def audit(request, audit_state):
    """Call with a Verdict: passes, fails with found/expected/fix, or records a waiver/advisory."""
    return Judge(request, audit_state)
