"""Fleets: a profile per host, and hosts spread over pytest-xdist workers.

Profile of a host, first match wins:
  1. --profile-map FILE: YAML mapping of host name (or shell pattern such as "rack2-*") to profile
  2. the Ansible inventory variable iommu_audit_profile (host or group variable) of an ansible:// host
  3. --profile (the default for every host; without it, a host matched by neither is a usage error)

With `pytest -n N` every check of one host runs on one worker (a scheduler that groups test ids
by host), so each host's facts are gathered exactly once and results equal a serial run. Workers
hand what they gathered back to the controller, which writes --save-facts once.
"""

import fnmatch
import os
import sys
from pathlib import Path

import pytest
import yaml

from iommu_audit import gather, profile as profiles

INVENTORY_VARIABLE = "iommu_audit_profile"


def add_options(group) -> None:
    group.addoption("--profile-map", metavar="FILE",
                    help="YAML mapping of host name (or shell pattern) to profile, for hosts that do not "
                         f"use --profile; Ansible hosts may set the inventory variable {INVENTORY_VARIABLE}")


def ansible_on_path() -> None:
    """testinfra runs `ansible-inventory` by name: find the one installed next to this Python (a .venv
    run as .venv/bin/python -m pytest does not have its bin/ on PATH)."""
    here = os.path.dirname(sys.executable)
    path = os.environ.get("PATH", "")
    if os.path.exists(os.path.join(here, "ansible-inventory")) and here not in path.split(os.pathsep):
        os.environ["PATH"] = here + os.pathsep + path


def inventory_vars(host) -> dict:
    """Variables the Ansible inventory gives an ansible:// testinfra host ({} for other transports)."""
    backend = getattr(host, "backend", None)
    if backend is None or backend.get_connection_type() != "ansible":
        return {}
    return backend.get_variables()


def _read_map(path: str) -> list[tuple[str, str]]:
    try:
        doc = yaml.safe_load(Path(path).read_text())
    except OSError as exc:
        raise pytest.UsageError(f"--profile-map {path}: cannot read it ({exc.strerror})") from None
    except yaml.YAMLError as exc:
        raise pytest.UsageError(f"--profile-map {path}: not valid YAML ({exc})".replace("\n", " ")) from None
    if not isinstance(doc, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in doc.items()):
        raise pytest.UsageError(f"--profile-map {path}: expected a mapping of host name (or pattern) to profile, "
                                "e.g. node1: dl360-gen9")
    return list(doc.items())


def host_profiles(config: pytest.Config, targets: list[gather.Target], default: profiles.Profile | None,
                  profile_dir: Path) -> dict[str, profiles.Profile]:
    """{target name: its profile}; each file is loaded once; any bad one, or a host left without one
    when there is no --profile, stops the run (usage error)."""
    path = config.getoption("profile_map", None)
    mapping = _read_map(path) if path else []
    loaded: dict[str, profiles.Profile] = {default.path: default} if default else {}
    out = {}
    for t in targets:
        chosen, why = next(((p, f"--profile-map {path} ({pattern})") for pattern, p in mapping
                            if fnmatch.fnmatchcase(t.name, pattern)), (None, ""))
        if chosen is None and t.inventory_vars.get(INVENTORY_VARIABLE):
            chosen, why = str(t.inventory_vars[INVENTORY_VARIABLE]), f"inventory variable {INVENTORY_VARIABLE}"
        if chosen is None and default is None:
            raise pytest.UsageError(
                f"host {t.name} has no profile: give --profile NAME for every host (a name from profiles/, e.g. "
                f"dl360-gen9, or a .yaml path), map it in --profile-map FILE, or set its Ansible inventory variable "
                f"{INVENTORY_VARIABLE}")
        if chosen is None:
            out[t.name] = default
            continue
        key = str(profiles.resolve(chosen, profile_dir))
        if key not in loaded:
            try:
                loaded[key] = profiles.load(chosen, profile_dir)
            except profiles.ProfileError as exc:
                raise pytest.UsageError(f"profile error: {exc} (profile of host {t.name}, from {why})") from None
        out[t.name] = loaded[key]
    return out


def profile_note(state, target: gather.Target) -> str:
    """', profile NAME' for the header of a run that mixes profiles; nothing when every host has --profile."""
    mixed = any(p is not state.profile for p in state.host_profiles.values())
    return f", profile {state.profile_for(target).name}" if mixed else ""


# --- pytest-xdist -----------------------------------------------------------------------------

def is_worker(config: pytest.Config) -> bool:
    return hasattr(config, "workerinput")


def host_of(test_id: str, names: list[str]) -> str | None:
    """The host a test id belongs to: ids read test_x[host] or test_x[host-subject]."""
    params = test_id.rpartition("[")[2].rstrip("]") if test_id.endswith("]") else ""
    fits = [n for n in names if params == n or params.startswith(n + "-")]
    return max(fits, key=len, default=None)


def make_scheduler(config: pytest.Config, log, names: list[str]):
    from xdist.scheduler import LoadScopeScheduling

    class ByHost(LoadScopeScheduling):
        """LoadScope with one scope per host: every check of a host runs on the same worker."""

        def _split_scope(self, nodeid: str) -> str:
            return host_of(nodeid, names) or super()._split_scope(nodeid)

    return ByHost(config, log)


def worker_output(config: pytest.Config, gathered: dict[str, gather.Gathered], errors: dict[str, str]) -> None:
    config.workeroutput["iommu_audit"] = {"gathered": [g.__dict__ for g in gathered.values()], "errors": dict(errors)}


def from_worker(node) -> tuple[list[gather.Gathered], dict[str, str]]:
    out = getattr(node, "workeroutput", {}).get("iommu_audit") or {"gathered": [], "errors": {}}
    return [gather.Gathered(**g) for g in out["gathered"]], out["errors"]


class XdistHooks:
    """Registered when pytest-xdist is active: host-grouped scheduling, facts collected from workers."""

    def __init__(self, state):
        self.state = state

    @pytest.hookimpl(optionalhook=True)
    def pytest_xdist_make_scheduler(self, config: pytest.Config, log):
        return make_scheduler(config, log, [t.name for t in self.state.targets])

    @pytest.hookimpl(optionalhook=True)
    def pytest_testnodedown(self, node, error) -> None:
        gathered, errors = from_worker(node)
        for g in gathered:
            self.state.gathered.setdefault(g.name, g)
        for name, error_text in errors.items():
            self.state.errors.setdefault(name, error_text)
