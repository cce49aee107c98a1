"""--fix in the pytest session: usage guards, the dry run on a copy, the plan as JSON."""

import json

import pytest

from tests.unit.test_plugin import assert_clean, assert_usage_error, run

NVME1 = "0000:06:00.0"


@pytest.fixture
def broken(host):
    return host.bind(NVME1, "nvme").remove(f"etc/driverctl.d/pci-{NVME1}")


@pytest.mark.parametrize("args, fragment", [
    (["--dry-run"], "go with --fix"),
    (["--fix"], "copy (--sysroot/--facts): use --fix --dry-run"),
    (["--undo=20261201T021900Z-1a2b"], "changes live hosts only"),
    (["--fix", "--undo=20261201T021900Z-1a2b", "--dry-run"], "cannot be combined"),
])
def test_usage_errors(broken, args, fragment):
    assert_usage_error(run("--profile", "dl360-gen9", f"--sysroot={broken.root}", *args), fragment)


def test_live_fix_without_terminal_or_yes_is_refused():
    proc = run("--profile", "dl360-gen9", "--fix", "--undo=x")
    assert_usage_error(proc, "cannot be combined")
    proc = run("--profile", "dl360-gen9", "--fix")  # stdin is not a terminal here
    assert_usage_error(proc, "--yes")


def test_dry_run_on_a_copy_plans_and_changes_nothing(broken, tmp_path):
    before = {p: p.read_bytes() for p in broken.root.rglob("*") if p.is_file() and not p.is_symlink()}
    plan = tmp_path / "plan.json"
    proc = run("--profile", "dl360-gen9", f"--sysroot={broken.root}", "--fix", "--dry-run", f"--plan-json={plan}")
    assert_clean(proc)
    assert f"bind {NVME1} (nvme) to vfio-pci now" in proc.output and "dry run: nothing changed" in proc.output
    assert proc.returncode == 1  # the audit that follows still judges the host as it is
    doc = json.loads(plan.read_text())
    steps = doc["hosts"][0]["steps"]
    assert [s["requirement"] for s in steps] == ["bound-to-vfio"] and steps[0]["args"] == [NVME1]
    assert "bound-to-vfio[ceph-nvme-1]" in doc["hosts"][0]["failing"]
    after = {p: p.read_bytes() for p in broken.root.rglob("*") if p.is_file() and not p.is_symlink()}
    assert after == before


def test_second_dry_run_on_a_compliant_copy_says_nothing_to_do(host):
    proc = run("--profile", "dl360-gen9", f"--sysroot={host.root}", "--fix", "--dry-run")
    assert "nothing to do" in proc.output and proc.returncode == 0


@pytest.mark.parametrize("answer, applies", [("yes", True), ("no", False), ("y", False)])
def test_the_question_reads_the_terminal_not_pytests_captured_stdin(tmp_path, answer, applies):
    """pytest puts /dev/null on fd 0; --fix must see (and read) the user's terminal under a real pty."""
    import os
    import sys

    from tests.e2e.audit_run import _answering
    (tmp_path / "askplug.py").write_text(
        "import pytest\nfrom iommu_audit.fix.session import FixSession, _terminal\n"
        "def pytest_configure(config):\n"
        "    config.terminal = _terminal(config)\n"
        "@pytest.hookimpl(tryfirst=True)\n"  # where --fix asks: what it prints after the answer must show
        "def pytest_runtestloop(session):\n"
        "    ask = FixSession.__new__(FixSession)\n"
        "    ask.config = session.config\n"
        "    tr = session.config.pluginmanager.get_plugin('terminalreporter')\n"
        "    tr.write_line(f'TERMINAL={session.config.terminal} APPLY={ask.confirm(2, 1)}')\n")
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    (tmp_path / "test_one.py").write_text("def test_one():\n    pass\n")
    r = _answering([sys.executable, "-m", "pytest", "-p", "askplug", "-p", "no:randomly", "-q", "-p", "no:cacheprovider",
                    "--rootdir", str(tmp_path), str(tmp_path / "test_one.py")], env, answer)
    assert "Apply 2 change(s) on 1 host(s)? Type 'yes' to go on:" in r.stdout
    assert f"TERMINAL=True APPLY={applies}" in r.stdout, r.stdout


def test_the_boot_step_is_verified_on_the_host_read_again(host, dl360):
    """FixSession.verify: the facts are gathered anew (the step changed the host) and judged by plan.boot_unmet."""
    from types import SimpleNamespace

    from iommu_audit.fix.plan import Step
    from iommu_audit.fix.session import FixSession

    class State:
        gathered, facts, errors, reads = {}, {}, {}, []

        def gather(self, t):
            self.reads.append(t.name)
            if t.name == "gone":
                self.errors[t.name] = "ssh: connection refused"
            else:
                self.facts[t.name] = host.facts()

        def profile_for(self, t):
            return dl360
    fs = FixSession.__new__(FixSession)
    fs.state, node = State(), SimpleNamespace(name="node1")
    fs.state.facts["node1"] = "stale facts from before the step"
    boot = Step("cmdline-persistent", "node1", "kernel arguments", repairs=["cmdline-persistent"])
    assert fs.verify(node, Step("bound-to-vfio", "ceph-nvme-1", "bind")) == "" and fs.state.reads == []
    assert fs.verify(node, boot) == "" and fs.state.reads == ["node1"]
    host.replace("boot/grub/grub.cfg", "intel_iommu=on", "intel_iommu=off")  # what a failed regeneration leaves
    assert "/boot/grub/grub.cfg" in fs.verify(node, boot) and "intel_iommu=off disables" in fs.verify(node, boot)
    assert fs.verify(SimpleNamespace(name="gone"), boot) == "cannot read the host again: ssh: connection refused"
