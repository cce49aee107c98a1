"""Fixtures of the checks: hosts and profile subjects as parameters, facts, and `audit`.

Test ids read as requirement[host-device], e.g. test_bound_to_vfio[node1-ceph-nvme-1].
"""

import pytest

from iommu_audit.plugin import Judge, state_of


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


# The per-check fixtures ask for as little as they can, `request` least of all: pytest looks up
# every fixture a fixture asks for at each check, and builds a new definition for `request` at
# each lookup (bench/speed.py: most of a large host's run). The session's config comes from this
# hook instead.
_config: pytest.Config | None = None


def pytest_configure(config: pytest.Config) -> None:
    global _config
    _config = config


@pytest.fixture(scope="session")
def audit_state():
    return state_of(_config)


@pytest.fixture(scope="module")
def profile(target):
    return state_of(_config).profile_for(target)


@pytest.fixture(scope="module")
def facts(target):
    """The host's facts, gathered once; a host that could not be read skips its checks
    (the run fails for it all the same: test_facts_gathered, plugin.UnreadHosts)."""
    state = state_of(_config)
    state.gather(target)
    if target.name in state.errors:
        pytest.skip(f"no facts from {target.name}: see test_facts_gathered[{target.name}]")
    return state.facts[target.name]


@pytest.fixture(scope="session")
def audit():
    """Call with a Verdict: the running check passes, fails with found/expected/fix, or records a waiver/advisory."""
    return Judge(state_of(_config))
