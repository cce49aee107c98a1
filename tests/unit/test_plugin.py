"""The pytest plugin end to end: `python -m pytest --profile ...` in a subprocess.

Each test runs the real command line from the project root against the sample
host, a broken copy of it (tests/sysroot.HostCopy), saved facts, an unreachable
SSH host or this machine, and asserts on the exit code and what a person reads.
Hostile inputs (things that must never pass) live in tests/hostile/.
"""

import dataclasses
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from iommu_audit import gather, plugin
from tests.cli import (ALL_CHECKS, BUNDLED, NVME1, UNBOUND_ID, assert_clean, assert_usage_error, counts, failed_ids,
                       profile_with, run)
from tests.conftest import PROJECT
from tests.sysroot import HostCopy


def waiver_profile(tmp_path: Path, *expires: str) -> Path:
    """ceph-nvme-1 waived from bound-to-vfio by one waiver per date, listed in the order given."""
    waivers = "".join(f"""
  - requirement: bound-to-vfio
    device: ceph-nvme-1
    reason: RMA case 5501, replacement card on order{f' (renewal {i})' if i else ''}
    expires: {date}
    approved_by: j.doe""" for i, date in enumerate(expires))
    return profile_with(tmp_path, "waivers: []", "waivers:" + waivers)


@pytest.fixture(scope="module")
def unbound(tmp_path_factory) -> HostCopy:
    """The sample host with ceph-nvme-1 back on the nvme driver (shared: tests only read it)."""
    return HostCopy(tmp_path_factory.mktemp("unbound") / "dl360-gen9-01").bind(NVME1, "nvme")


# --- a compliant host ----------------------------------------------------------------------------

def test_sample_host_passes():
    # The documented command; a relative path inside the project works with a space too.
    proc = run("--profile", "dl360-gen9", "--sysroot", "samples/dl360-gen9-01")
    assert proc.returncode == 0, proc.output
    assert f"{ALL_CHECKS} passed" in proc.output
    assert counts(proc.output) == {"passed": ALL_CHECKS}
    assert "iommu-audit profile: dl360-gen9 (" in proc.output
    assert "iommu-audit hosts: dl360-gen9-01 (sysroot:samples/dl360-gen9-01)" in proc.output
    assert_clean(proc)


# --- usage errors: exit 4, one line, no traceback -------------------------------------------------

def test_checks_without_profile():
    assert_usage_error(run(), "host local has no profile: give --profile NAME for every host", "dl360-gen9",
                       "--profile-map FILE", "iommu_audit_profile")


@pytest.mark.parametrize("case", [
    "missing",
    "unquoted-address",
    "impossible-unquoted-date",
])
def test_bad_profile(tmp_path, case):
    if case == "missing":
        proc = run("--profile=dl380-gen10", "--sysroot=samples/dl360-gen9-01")
        assert_usage_error(proc, "profile error: ", "dl380-gen10.yaml: no such profile",
                           "bundled profiles: dl360-gen9")
        return
    if case == "unquoted-address":
        path = profile_with(tmp_path, f'address: "{NVME1}"', f"address: {NVME1}")
        fragments = [f"{path}: devices[0].address: expected a string, got 360.0", "quote it"]
    else:
        path = waiver_profile(tmp_path, "2099-13-01")
        fragments = [f"{path}: waivers[0].expires", "2099-13-01"]
    proc = run(f"--profile={path}", "--sysroot=samples/dl360-gen9-01")
    assert_usage_error(proc, "profile error: ", *fragments)


def test_sysroot_without_proc_or_sys(tmp_path):
    (tmp_path / "etc").mkdir()
    proc = run("--profile=dl360-gen9", f"--sysroot={tmp_path}")
    assert_usage_error(proc, f"--sysroot {tmp_path}: not a host copy (no proc/ or sys/ inside)")


def test_sysroot_and_facts_together(tmp_path):
    proc = run("--profile=dl360-gen9", "--sysroot=samples/dl360-gen9-01", f"--facts={tmp_path / 'facts.json'}")
    assert_usage_error(proc, "--sysroot and --facts cannot be combined")


@pytest.mark.parametrize("paths", [["tests/unit/test_profile.py"], ["tests/unit/test_profile.py", "profiles"]])
def test_profile_with_test_paths_that_hold_no_check(paths):
    # Without the error this ran the project's own tests, no audit check, and exited 0.
    proc = run("--profile=dl360-gen9", "--sysroot=samples/dl360-gen9-01", *paths)
    assert_usage_error(proc, "--profile given, but no audit check was selected",
                       f"the test paths given ({' '.join(paths)}) hold none of the checks in {PROJECT / 'checks'}",
                       "run without test paths, or with paths under checks/", after_collection=True)


def test_deselecting_some_checks_is_not_an_error():
    proc = run("--profile=dl360-gen9", "--sysroot=samples/dl360-gen9-01", "-k", "bound_to_vfio or disk_present")
    assert proc.returncode == 0, proc.output
    assert counts(proc.output) == {"passed": 5, "deselected": ALL_CHECKS - 5}
    assert_clean(proc)


def test_deselecting_every_check_is_not_a_usage_error():
    # -k chose the checks, and chose none: pytest's own "no tests ran" (exit 5), not our usage error.
    proc = run("--profile=dl360-gen9", "--sysroot=samples/dl360-gen9-01", "-k", "no_such_check")
    assert proc.returncode == 5, proc.output
    assert counts(proc.output) == {"deselected": ALL_CHECKS}
    assert "no audit check was selected" not in proc.output
    assert_clean(proc)


def test_paths_under_checks_are_selected():
    proc = run("--profile=dl360-gen9", "--sysroot=samples/dl360-gen9-01", "checks/test_host.py")
    assert proc.returncode == 0, proc.output
    assert counts(proc.output) == {"passed": 1}


@pytest.mark.parametrize("where", ["inside", "outside"])
@pytest.mark.parametrize("spelling", ["space", "equals"])
@pytest.mark.parametrize("source", ["sysroot", "facts"])
def test_path_options_with_space_or_equals(tmp_path, unbound, where, spelling, source):
    # pytest picks its root directory before it knows plugin options, and takes the value after
    # "--sysroot" for a test path: the root, the test ids and its cache must not follow it.
    def opt(name: str, value) -> list[str]:
        return [name, str(value)] if spelling == "space" else [f"{name}={value}"]

    profile = shutil.copy(PROJECT / "profiles" / "dl360-gen9.yaml", tmp_path / "site.yaml")
    saved = tmp_path / "saved" / "facts.json"
    saved.parent.mkdir()
    if source == "facts":
        saved.write_text(gather_file(unbound))
        target = opt("--facts", saved)
    else:
        target = opt("--sysroot", unbound.root) + opt("--save-facts", saved)
    before = sorted(p.name for p in unbound.root.iterdir())
    cwd = PROJECT if where == "inside" else tmp_path
    proc = run(*opt("--profile", profile), *target, cwd=cwd)
    assert proc.returncode == 1, proc.output
    assert f"rootdir: {PROJECT}" in proc.output
    assert counts(proc.output) == {"failed": 1, "passed": ALL_CHECKS - 1}
    assert re.search(rf"^FAILED (\.\./)*\S*checks/test_devices.py::{re.escape(UNBOUND_ID)} ", proc.output, re.M)
    assert sorted(p.name for p in unbound.root.iterdir()) == before  # nothing written into the copy
    assert json.loads(saved.read_text())["hosts"][0]["name"] == "dl360-gen9-01"
    assert_clean(proc)


def gather_file(host: HostCopy) -> str:
    g = host.gathered()
    return json.dumps({"format": gather.FACTS_FORMAT, "hosts": [g.__dict__]})


def test_outside_the_clone_without_options_is_not_an_audit(tmp_path):
    # The plugin is installed in the venv: plain pytest elsewhere must not demand a profile or run checks.
    (tmp_path / "test_other.py").write_text("def test_other():\n    assert 1 + 1 == 2\n")
    proc = run(cwd=tmp_path)
    assert proc.returncode == 0, proc.output
    assert counts(proc.output) == {"passed": 1}


def test_sysroot_of_this_machine_is_named_after_it():
    # "--sysroot=/" reads this machine's files offline; its id must not be empty.
    hostname = Path("/proc/sys/kernel/hostname").read_text().strip()
    proc = run("--profile=dl360-gen9", "--sysroot=/", "-k", "facts_gathered")
    assert f"test_facts_gathered[{hostname}]" in proc.stdout or f"{hostname} (sysroot:/)" in proc.output, proc.output
    assert f"iommu-audit hosts: {hostname} (sysroot:/)" in proc.output
    assert_clean(proc)


def test_two_hosts_behind_one_address_are_told_apart():
    # A lab forwards one address's ports to several hosts: ids and headers keep the port.
    proc = run("--profile=dl360-gen9", "--hosts=ssh://root@127.0.0.1:1?timeout=3,ssh://root@127.0.0.1:2?timeout=3",
               "-k", "facts_gathered", timeout=60)
    assert proc.returncode == 1, proc.output
    assert "iommu-audit hosts: 127.0.0.1:1 (ssh://root@127.0.0.1:1), 127.0.0.1:2 (ssh://root@127.0.0.1:2)" \
        in proc.output
    assert failed_ids(proc.output) == ["checks/test_host.py::test_facts_gathered[127.0.0.1:1]",
                                       "checks/test_host.py::test_facts_gathered[127.0.0.1:2]"]
    assert_clean(proc)


# --- findings: required, recommended, waived ------------------------------------------------------

def test_broken_host_fails_with_found_expected_fix(unbound):
    proc = run("--profile=dl360-gen9", f"--sysroot={unbound.root}")
    assert proc.returncode == 1, proc.output
    assert counts(proc.output) == {"failed": 1, "passed": ALL_CHECKS - 1}
    assert failed_ids(proc.output) == [f"checks/test_devices.py::{UNBOUND_ID}"]
    # The host id in test ids is the sysroot directory's name.
    section = proc.output.split(UNBOUND_ID, 1)[1].split("short test summary", 1)[0]
    assert "[bound-to-vfio]" in section and "ceph-nvme-1 on dl360-gen9-01" in section
    assert f"{NVME1} is bound to nvme" in section  # what was found
    assert re.search(rf"^  expected: +{NVME1} bound to vfio-pci$", section, re.M), section
    assert re.search(rf"^  fix: +driverctl set-override {NVME1} vfio-pci", section, re.M), section
    # A finding, not a crash: no Python frames from the plugin.
    assert "plugin.py" not in proc.output
    assert_clean(proc)


def test_recommended_requirement_is_advisory(tmp_path, unbound):
    profile = profile_with(tmp_path, "severity:\n", "severity:\n  bound-to-vfio: recommended\n")
    proc = run(f"--profile={profile}", f"--sysroot={unbound.root}")
    assert proc.returncode == 0, proc.output
    assert counts(proc.output) == {"passed": ALL_CHECKS - 1, "advisory": 1}
    assert "waived and recommended (not required) findings" in proc.output
    assert f"checks/test_devices.py::{UNBOUND_ID}: RECOMMENDED: {NVME1} is bound to nvme" in proc.output
    assert_clean(proc)


def test_waiver_until_future_date(tmp_path, unbound):
    proc = run(f"--profile={waiver_profile(tmp_path, '2099-01-31')}", f"--sysroot={unbound.root}")
    assert proc.returncode == 0, proc.output
    assert counts(proc.output) == {"passed": ALL_CHECKS - 1, "waived": 1}
    assert (f"{UNBOUND_ID}: WAIVED until 2099-01-31 by j.doe: RMA case 5501, replacement card on order "
            f"| found: {NVME1} is bound to nvme") in proc.output
    assert_clean(proc)


@pytest.mark.parametrize("order", [("2020-01-31", "2099-01-31"), ("2099-01-31", "2020-01-31")])
def test_renewed_waiver_wins_over_an_expired_one(tmp_path, unbound, order):
    # A renewal appended below the expired waiver is how people extend one: the later expiry counts.
    proc = run(f"--profile={waiver_profile(tmp_path, *order)}", f"--sysroot={unbound.root}")
    assert proc.returncode == 0, proc.output
    assert counts(proc.output) == {"passed": ALL_CHECKS - 1, "waived": 1}
    assert f"{UNBOUND_ID}: WAIVED until 2099-01-31 by j.doe" in proc.output
    assert "expired" not in proc.output
    assert_clean(proc)


def test_expired_waiver_fails(tmp_path, unbound):
    proc = run(f"--profile={waiver_profile(tmp_path, '2020-01-31')}", f"--sysroot={unbound.root}")
    assert proc.returncode == 1, proc.output
    assert failed_ids(proc.output) == [f"checks/test_devices.py::{UNBOUND_ID}"]
    assert re.search(r"^  waiver: +expired on 2020-01-31 \(RMA case 5501", proc.output, re.M), proc.output
    assert "WAIVED" not in proc.output
    assert_clean(proc)


# --- saved facts ---------------------------------------------------------------------------------

def test_save_facts_then_rerun_without_the_host(tmp_path):
    host = HostCopy(tmp_path / "dl360-gen9-01").replace("proc/cmdline", " intel_iommu=on", "")
    facts = tmp_path / "facts.json"
    first = run("--profile=dl360-gen9", f"--sysroot={host.root}", f"--save-facts={facts}")
    assert first.returncode == 1, first.output
    assert failed_ids(first.output) == ["checks/test_kernel.py::test_cmdline_iommu[dl360-gen9-01]"]
    assert "intel_iommu=on is missing" in first.output
    doc = json.loads(facts.read_text())
    assert doc["format"] == "iommu-audit-facts/1" and [h["name"] for h in doc["hosts"]] == ["dl360-gen9-01"]

    shutil.rmtree(host.root)
    second = run("--profile=dl360-gen9", f"--facts={facts}")
    assert second.returncode == first.returncode, second.output
    assert failed_ids(second.output) == failed_ids(first.output)
    assert counts(second.output) == counts(first.output) == {"failed": 1, "passed": ALL_CHECKS - 1}
    assert f"dl360-gen9-01 (facts:{facts}#dl360-gen9-01)" in second.output
    assert "intel_iommu=on is missing" in second.output
    assert_clean(second)


@pytest.mark.parametrize("content, fragment", [
    ('{"format": "iommu-audit-facts/1", "hosts": [{"name": "dl360', "not JSON"),
    ('{"hosts": []}', 'not an iommu-audit facts file (expected "format": "iommu-audit-facts/1")'),
])
def test_corrupt_facts_file(tmp_path, content, fragment):
    facts = tmp_path / "facts.json"
    facts.write_text(content)
    assert_usage_error(run("--profile=dl360-gen9", f"--facts={facts}"), f"--facts {facts}: {fragment}")


@pytest.mark.parametrize("option", ["--facts", "--sysroot"])
def test_no_hosts_at_all_is_not_a_pass(tmp_path, option):
    if option == "--facts":
        facts = tmp_path / "facts.json"
        facts.write_text('{"format": "iommu-audit-facts/1", "hosts": []}\n')
        proc = run("--profile=dl360-gen9", f"--facts={facts}")
    else:
        proc = run("--profile=dl360-gen9", "--sysroot=,")
    assert_usage_error(proc, "no host to audit")


def test_facts_cut_short_are_not_audited(tmp_path):
    facts = tmp_path / "facts.json"
    output = HostCopy(tmp_path / "dl360-gen9-01").probe_output()
    cut = output[: output.index("::iommu-audit:: libvirt")]
    facts.write_text(json.dumps({"format": "iommu-audit-facts/1",
                                 "hosts": [{"name": "dl360-gen9-01", "probe_output": cut}]}))
    proc = run("--profile=dl360-gen9", f"--facts={facts}", "-rfs")
    # The file itself is fine, one host in it is not: that host fails facts-gathered, its other checks skip.
    assert proc.returncode == 1, proc.output
    assert counts(proc.output) == {"failed": 1, "skipped": ALL_CHECKS - 1}
    assert failed_ids(proc.output) == ["checks/test_host.py::test_facts_gathered[dl360-gen9-01]"]
    assert f"facts:{facts}#dl360-gen9-01: the saved facts are cut short" in proc.output
    assert "no facts from dl360-gen9-01: see test_facts_gathered[dl360-gen9-01]" in proc.output
    assert_clean(proc)


# --- live hosts ----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def unreachable(tmp_path_factory) -> subprocess.CompletedProcess:
    """One run against a closed SSH port on this machine: refused at once.

    testinfra's ssh backend takes its connect timeout from the host spec (?timeout=3); BatchMode
    (never ask for a password) comes from an ssh config file. --ssh-extra-args asks for port 2: it
    shows whether that option reaches ssh (see test_ssh_extra_args_reach_ssh).
    """
    if shutil.which("ssh") is None:
        pytest.skip("no ssh client on this machine")
    config = tmp_path_factory.mktemp("ssh") / "config"
    config.write_text("Host *\n  BatchMode yes\n  StrictHostKeyChecking no\n  UserKnownHostsFile /dev/null\n")
    return run("--profile=dl360-gen9", "--hosts=ssh://root@127.0.0.1:1?timeout=3", f"--ssh-config={config}",
               "--ssh-extra-args=-o Port=2", "-rfEs", timeout=60)


def test_unreachable_host_fails_facts_gathered_and_skips_the_rest(unreachable):
    proc = unreachable
    assert proc.returncode == 1, proc.output
    assert counts(proc.output) == {"failed": 1, "skipped": ALL_CHECKS - 1}
    assert failed_ids(proc.output) == ["checks/test_host.py::test_facts_gathered[127.0.0.1:1]"]
    section = proc.output.split("test_facts_gathered[127.0.0.1:1]", 1)[1]
    assert "[facts-gathered]" in section and "ssh://root@127.0.0.1:1" in section
    assert "no facts from 127.0.0.1:1: see test_facts_gathered[127.0.0.1:1]" in proc.output  # the skip reason
    assert_clean(proc)


def test_unreachable_host_message_is_readable(unreachable):
    assert "Connection refused" in unreachable.output
    assert "prints every fact the checks need" not in unreachable.output  # the probe script's first comment
    assert "CommandResult(" not in unreachable.output


def test_ssh_extra_args_reach_ssh(unreachable):
    assert "port 2" in unreachable.output, unreachable.output[-600:]


def test_local_host_without_iommu_fails_but_does_not_error():
    if any(Path("/sys/class/iommu").glob("*")):
        pytest.skip("this machine has an IOMMU (/sys/class/iommu is not empty): what passes here depends on its setup")
    proc = run("--profile=dl360-gen9", "-rA")
    n = counts(proc.output)
    assert n.get("error", 0) == 0, proc.output
    assert sum(n.values()) == ALL_CHECKS, proc.output
    assert "PASSED checks/test_host.py::test_facts_gathered[local]" in proc.output
    assert proc.returncode == 1, proc.output
    assert "checks/test_kernel.py::test_iommu_active[local]" in failed_ids(proc.output)
    assert_clean(proc)


# --- facts-gathered notes ------------------------------------------------------------------------

@pytest.mark.parametrize("kind, uid, noted", [
    ("live", "1000", True),
    ("live", "0", False),
    ("sysroot", "", False),   # a sysroot is read by whoever runs the audit: no root to ask for
    ("saved", "1000", False),  # the host is not there to re-run with --sudo
])
def test_facts_gathered_notes_a_probe_without_root(host, dl360, kind, uid, noted):
    target = gather.Target("node1", {"live": "ssh://node1", "sysroot": f"sysroot:{host.root}",
                                     "saved": "facts:f.json#node1"}[kind],
                           sysroot=str(host.root) if kind == "sysroot" else "",
                           saved_output="(saved)" if kind == "saved" else "")
    state = plugin.AuditState(dl360, [target])
    state.gathered["node1"] = gather.Gathered("node1", target.source, "", "(already gathered)")
    state.facts["node1"] = dataclasses.replace(host.facts(), uid=uid)
    v = plugin.gathered_verdict(state, target)
    note = "not root: kernel log and libvirt definitions may be unreadable; use --sudo"
    assert v.ok and not v.skip  # reachability is what the check is about: still a pass
    assert (note in v.evidence) is noted, v


def test_html_report_shows_requirement_and_finding_of_every_check(tmp_path, unbound):
    report = tmp_path / "audit.html"
    proc = run("--profile=dl360-gen9", f"--sysroot={unbound.root}", f"--html={report}", "--self-contained-html")
    assert proc.returncode == 1, proc.output
    page = report.read_text()
    assert ">Requirement</th>" in page and ">Finding</th>" in page
    assert page.count("col-requirement") == ALL_CHECKS  # one cell per check
    assert "0000:06:00.0 is bound to nvme" in page  # the failure's finding
    assert "ACPI DMAR table present" in page  # and the evidence of a pass


# --- A pytest other than the project's own (issue 9: "another pytest on the PATH") ---

SAMPLE = ("--profile", "dl360-gen9", "--sysroot", "samples/dl360-gen9-01", "-q")


def test_the_root_conftest_loads_the_plugin_when_no_entry_point_did():
    """PYTEST_DISABLE_PLUGIN_AUTOLOAD stands for a pytest that has not installed this project."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    proc = subprocess.run([sys.executable, "-m", "pytest", *SAMPLE], cwd=PROJECT, capture_output=True, text=True,
                          env={**env, "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"}, timeout=120)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output
    assert counts(output) == {"passed": ALL_CHECKS}


def test_the_audit_runs_without_pytest_html():
    proc = run(*SAMPLE, "-p", "no:html")
    assert_clean(proc)
    assert proc.returncode == 0 and counts(proc.output) == {"passed": ALL_CHECKS}, proc.output


def test_a_python_without_testinfra_gets_one_line_and_exit_4():
    """A system pytest without this project or testinfra: no entry points, testinfra unimportable."""
    code = ("import sys; sys.modules['testinfra'] = None; import pytest; "
            f"sys.exit(pytest.main({list(SAMPLE)!r}))")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    proc = subprocess.run([sys.executable, "-c", code], cwd=PROJECT, capture_output=True, text=True, timeout=120,
                          env={**env, "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"})
    assert proc.returncode == 4, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    assert proc.stderr.strip().splitlines() == [
        f"iommu-audit: this Python ({sys.executable}) lacks the package 'testinfra': set up with "
        "`bash scripts/install.sh`, then `. .venv/bin/activate` (or run `.venv/bin/python -m pytest ...`)"]
