"""Hostile inputs to the audit's policy: nothing that was not checked may pass, bad input is one line.

Each case is a real `python -m pytest --profile ...` run on a modified copy of the sample
host (or a hostile profile, saved-facts file or option), asserting the exit code and the
verdicts a person reads. A host that could not be read, or a profiled device whose checks
could not run, never yields exit 0.
"""

import json
import os
import re
import time

import pytest

from iommu_audit import gather
from tests.cli import ALL_CHECKS, BUNDLED, assert_clean, assert_usage_error, counts, failed_ids, profile_with, run
from tests.sysroot import HostCopy

NVME1 = "0000:06:00.0"  # ceph-nvme-1 (passed to z-ceph-1)
NVME4 = "0000:09:00.0"  # host-nvme-4 (kept on the host)
HDD1 = "wwn-0x5000c500b1c2d3e4"  # gluster-hdd-1


def pulled(host: HostCopy, addr: str) -> HostCopy:
    """The copy as the host looks with the card pulled: no sysfs device, no group member."""
    group = os.readlink(host.device_dir(addr) / "iommu_group").rsplit("/", 1)[-1]
    host.remove(f"sys/kernel/iommu_groups/{group}/devices/{addr}")
    device_dir = host.device_dir(addr)
    host.remove(f"sys/bus/pci/devices/{addr}")
    host.remove(str(device_dir.relative_to(host.root)))
    return host


def waiver(requirement: str, device: str, expires: str = "2099-01-31") -> str:
    return f"""waivers:
  - requirement: {requirement}
    device: {device}
    reason: card out for RMA, case 7781
    expires: {expires}
    approved_by: j.doe"""


@pytest.fixture(scope="module")
def nvme1_checks() -> list[str]:
    """The checks ceph-nvme-1 gets besides device-present (whatever the catalog holds today)."""
    proc = run("--profile=dl360-gen9", "--sysroot=samples/dl360-gen9-01", "--co", "-q")
    names = re.findall(r"::(test_\w+)\[dl360-gen9-01-ceph-nvme-1\]", proc.stdout)
    assert "test_bound_to_vfio" in names, proc.output
    return sorted(n for n in names if n != "test_device_present")


def outcome_lines(output: str, kind: str) -> list[str]:
    return [ln for ln in output.splitlines() if ln.startswith(f"{kind} ")]


# --- facts-gathered is fixed at required ---------------------------------------------------------

@pytest.mark.parametrize("old, new, where", [
    ("severity:\n", "severity:\n  facts-gathered: recommended\n", "severity.facts-gathered"),
    ("waivers: []", waiver("facts-gathered", "x").replace("    device: x\n", ""), "waivers[0].requirement"),
])
def test_facts_gathered_cannot_be_downgraded_or_waived(tmp_path, old, new, where):
    # Both turned "34 skipped, 1 advisory" for an unreachable host into exit 0.
    profile = profile_with(tmp_path, old, new)
    proc = run(f"--profile={profile}", "--sysroot=samples/dl360-gen9-01")
    assert_usage_error(proc, f"profile error: {profile}: {where}: cannot be downgraded or waived")


@pytest.mark.parametrize("source", ["unreachable", "garbage-facts"])
def test_unread_host_fails_even_with_facts_gathered_deselected(tmp_path, source):
    if source == "unreachable":
        target = ["--hosts=ssh://root@127.0.0.1:1?timeout=3"]
        name = "127.0.0.1:1"
    else:
        facts = tmp_path / "facts.json"
        facts.write_text(json.dumps({"format": gather.FACTS_FORMAT,
                                     "hosts": [{"name": "node1", "probe_output": "\x00garbage\n" * 50}]}))
        target, name = [f"--facts={facts}"], "node1"
    proc = run("--profile=dl360-gen9", *target, "-k", "not facts_gathered", timeout=60)
    assert proc.returncode == 1, proc.output
    assert counts(proc.output) == {"skipped": ALL_CHECKS - 1, "deselected": 1}
    assert f"iommu-audit: not read, so not ready: {name} (see facts-gathered)" in proc.output
    assert_clean(proc)


# --- a profiled device or disk whose checks could not run ----------------------------------------

def test_missing_device_fails_its_checks_even_with_device_present_downgraded(tmp_path, nvme1_checks):
    host = pulled(HostCopy(tmp_path / "dl360-gen9-01"), NVME1)
    profile = profile_with(tmp_path, "severity:\n", "severity:\n  device-present: recommended\n")
    proc = run(f"--profile={profile}", f"--sysroot={host.root}", "-rfEs")
    assert proc.returncode == 1, proc.output
    n = counts(proc.output)
    assert "test_device_present[dl360-gen9-01-ceph-nvme-1]: RECOMMENDED: no device at" in proc.output
    # Every other check of the device fails as not checked (a recommended one is listed as an advisory).
    not_checked = re.findall(r"::(test_\w+)\[dl360-gen9-01-ceph-nvme-1\][ :-]+(?:Failed: \[[\w-]+\] ceph-nvme-1 on "
                             r"dl360-gen9-01: |RECOMMENDED: )not checked: ceph-nvme-1 not found", proc.output)
    assert sorted(set(not_checked)) == nvme1_checks, proc.output
    assert n.get("skipped", 0) == 0, proc.output
    assert_clean(proc)


def test_missing_device_with_its_presence_waived_is_skipped(tmp_path, nvme1_checks):
    # The accepted exception: the card is away under a waiver; its other checks cannot run and say why.
    host = pulled(HostCopy(tmp_path / "dl360-gen9-01"), NVME1)
    profile = profile_with(tmp_path, "waivers: []", waiver("device-present", "ceph-nvme-1"))
    proc = run(f"--profile={profile}", f"--sysroot={host.root}", "-rfEs")
    assert proc.returncode == 0, proc.output
    assert counts(proc.output) == {"passed": ALL_CHECKS - 1 - len(nvme1_checks),
                                   "waived": 1, "skipped": len(nvme1_checks)}, proc.output
    skips = outcome_lines(proc.output, "SKIPPED")  # "SKIPPED [4] path:line: reason", grouped by reason
    assert sum(int(re.match(r"SKIPPED \[(\d+)\]", ln).group(1)) for ln in skips) == len(nvme1_checks)
    assert all("ceph-nvme-1 not found" in ln and "(device-present waived until 2099-01-31: card out for RMA" in ln
               for ln in skips), skips
    assert_clean(proc)


def test_expired_presence_waiver_fails_again(tmp_path):
    host = pulled(HostCopy(tmp_path / "dl360-gen9-01"), NVME1)
    profile = profile_with(tmp_path, "waivers: []", waiver("device-present", "ceph-nvme-1", "2020-01-31"))
    proc = run(f"--profile={profile}", f"--sysroot={host.root}")
    assert proc.returncode == 1, proc.output
    assert "checks/test_devices.py::test_bound_to_vfio[dl360-gen9-01-ceph-nvme-1]" in failed_ids(proc.output)
    assert_clean(proc)


def test_missing_host_device_fails(tmp_path):
    # Host devices get no device-present check: a skip here used to be the only trace of a pulled card.
    host = pulled(HostCopy(tmp_path / "dl360-gen9-01"), NVME4)
    proc = run("--profile=dl360-gen9", f"--sysroot={host.root}")
    assert proc.returncode == 1, proc.output
    assert "checks/test_devices.py::test_host_device_kept[dl360-gen9-01-host-nvme-4]" in failed_ids(proc.output)
    assert "[host-device-kept] host-nvme-4 on dl360-gen9-01: not checked: host-nvme-4 not found" in proc.output
    assert_clean(proc)


def test_missing_disk_fails_its_checks_even_with_disk_present_downgraded(tmp_path):
    host = HostCopy(tmp_path / "dl360-gen9-01").remove(f"dev/disk/by-id/{HDD1}")
    profile = profile_with(tmp_path, "severity:\n", "severity:\n  disk-present: recommended\n")
    proc = run(f"--profile={profile}", f"--sysroot={host.root}")
    assert proc.returncode == 1, proc.output
    assert failed_ids(proc.output) == [
        "checks/test_disks.py::test_disk_not_used_by_host[dl360-gen9-01-gluster-hdd-1]",
        "checks/test_vms.py::test_disk_assigned_to_vm[dl360-gen9-01-gluster-hdd-1]"]
    assert counts(proc.output)["advisory"] == 1
    assert_clean(proc)


# --- bad input: one line, exit 4, nothing run -----------------------------------------------------

def test_profile_key_that_is_a_list(tmp_path):
    # Was an INTERNALERROR (unhashable list) from the duplicate-key check.
    profile = profile_with(tmp_path, "severity:\n", "severity:\n  [bound-to-vfio, device-present]: recommended\n")
    assert_usage_error(run(f"--profile={profile}", "--sysroot=samples/dl360-gen9-01"),
                       f"profile error: {profile}: line ", "a key must be a plain name, not a sequence")


def test_profile_alias_bomb(tmp_path):
    # Nine levels of nine aliases: 9**9 strings if expanded. Refused before anything is built.
    lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 10)]
    profile = tmp_path / "bomb.yaml"
    profile.write_text(BUNDLED + "\n".join(lines) + "\n")
    started = time.monotonic()
    proc = run(f"--profile={profile}", "--sysroot=samples/dl360-gen9-01", timeout=60)
    assert time.monotonic() - started < 30
    assert_usage_error(proc, f"profile error: {profile}: line ", "YAML alias *a0 is not allowed in a profile")


@pytest.mark.parametrize("case", ["missing-directory", "a-directory"])
def test_save_facts_path_is_checked_before_the_run(tmp_path, case):
    # Was a traceback after the run, with the results lost.
    path = tmp_path / "no-such-dir" / "node1.json" if case == "missing-directory" else tmp_path
    proc = run("--profile=dl360-gen9", "--sysroot=samples/dl360-gen9-01", f"--save-facts={path}")
    fragment = f"directory {path.parent} does not exist" if case == "missing-directory" else "is a directory"
    assert_usage_error(proc, f"--save-facts {path}: {fragment}")


# --- transports that would write on the host -----------------------------------------------------

def test_safe_ssh_is_refused():
    # testinfra's safe-ssh wraps each command in mktemp ... rm -f on the host.
    proc = run("--profile=dl360-gen9", "--hosts=safe-ssh://root@127.0.0.1:1")
    assert_usage_error(proc, "--hosts safe-ssh://127.0.0.1: refused",
                       "creates and removes temporary files on the host (mktemp, rm); use ssh://")


def test_other_transports_are_refused():
    proc = run("--profile=dl360-gen9", "--hosts=docker://some-container")
    assert_usage_error(proc, "--hosts docker://some-container: refused",
                       "local://, ssh://, paramiko:// or ansible://")


@pytest.mark.parametrize("case", ["force-ansible", "winrm-connection"])
def test_ansible_through_its_modules_is_refused(tmp_path, case):
    # Ansible's shell module copies AnsiballZ files into the host's ~/.ansible/tmp before running.
    pytest.importorskip("ansible")
    connection = "local" if case == "force-ansible" else "winrm"
    (tmp_path / "inventory.yml").write_text(f"all:\n  hosts:\n    kvm-a: {{ansible_connection: {connection}}}\n")
    extra = ["--force-ansible"] if case == "force-ansible" else []
    proc = run("--profile=dl360-gen9", "--hosts=ansible://kvm-a", f"--ansible-inventory={tmp_path / 'inventory.yml'}",
               *extra, timeout=120)
    assert_usage_error(proc, "--hosts ansible://kvm-a: would run through Ansible modules", "drop --force-ansible")
