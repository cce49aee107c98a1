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
