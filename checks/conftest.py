"""Fixtures of the checks: hosts and profile subjects as parameters, facts, and `audit`.

Test ids read as requirement[host-device], e.g. test_bound_to_vfio[node1-ceph-nvme-1].
"""

import pytest

from iommu_audit.plugin import UNREAD, Judge, state_of


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    state = state_of(metafunc.config)
    names = metafunc.fixturenames
    if "target" not in names:
        return
    kind = next((k for k in SUBJECTS if k in names), None)
    if kind is None:
        # Module scope keeps each file's checks together; facts are cached per host anyway.
        metafunc.parametrize("target", state.targets, ids=[t.name for t in state.targets], scope="module")
        return
    # Each host with the subjects of its own profile (a fleet may mix hardware models).
    pairs = [(t, s) for t in state.targets for s in SUBJECTS[kind](state.profile_for(t))]
    metafunc.parametrize(["target", kind], pairs, ids=[f"{t.name}-{s.name}" for t, s in pairs], scope="module")


SUBJECTS = {"device": lambda p: p.passthrough_devices, "host_device": lambda p: p.host_devices,
            "disk": lambda p: p.disks}


@pytest.fixture(scope="session")
def audit_state(request):
    return state_of(request.config)


@pytest.fixture(scope="module")
def profile(audit_state, target):
    return audit_state.profile_for(target)


@pytest.fixture
def facts(request, host_facts, target):
    if host_facts is None:  # the run fails for this host all the same (plugin.UnreadHosts)
        request.node.user_properties.append((UNREAD, target.name))
        pytest.skip(f"no facts from {target.name}: see test_facts_gathered[{target.name}]")
    return host_facts


@pytest.fixture(scope="module")
def host_facts(audit_state, target):
    """The host's facts, gathered once; None if it could not be read."""
    audit_state.gather(target)
    if target.name in audit_state.errors:
        return None
    return audit_state.facts[target.name]


@pytest.fixture
def audit(request, audit_state):
    """Call with a Verdict: passes, fails with found/expected/fix, or records a waiver/advisory."""
    return Judge(request, audit_state)
