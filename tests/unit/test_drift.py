"""Drift against the go-live baseline: pure comparisons on copies of the sample host, then --baseline end to end."""

import dataclasses
import os
import shutil

import pytest

from iommu_audit import drift
from tests.cli import counts
from tests.conftest import PROJECT
from tests.unit.test_fleet import outcomes
from tests.unit.test_plugin import run

NVME1, NVME4 = "0000:06:00.0", "0000:09:00.0"
AT = "2026-11-30T10:00:00+00:00"


@pytest.fixture
def baseline(host):
    return host.facts()


def device(dl360, name):
    return dl360.device_named(name)


def test_unchanged_host_has_no_drift(host, baseline, dl360):
    now = host.facts()
    assert drift.host_drift(baseline, now, AT).ok
    assert all(drift.device_drift(baseline, now, d, AT).ok for d in dl360.devices)
    assert all(drift.disk_drift(baseline, now, d, AT).ok for d in dl360.disks)


def test_rebound_device_drifts(host, baseline, dl360):
    host.bind(NVME1, "nvme")
    v = drift.device_drift(baseline, host.facts(), device(dl360, "ceph-nvme-1"), AT)
    assert not v.ok and v.found == "driver: vfio-pci -> nvme"
    assert v.expected == f"ceph-nvme-1 as at go-live ({AT})"


def test_group_membership_change_drifts(host, baseline, dl360):
    host.move_to_group("0000:07:00.0", "14")
    v = drift.device_drift(baseline, host.facts(), device(dl360, "ceph-nvme-1"), AT)
    assert not v.ok and v.found == "IOMMU group members: (none) -> 0000:07:00.0"


def test_vm_definition_change_drifts_for_its_device(host, baseline, dl360):
    for rel in ("etc/libvirt/qemu/z-ceph-1.xml", "run/libvirt/qemu/z-ceph-1.xml"):  # edited and restarted
        host.replace(rel, "managed='yes'", "managed='no'")
    v = drift.device_drift(baseline, host.facts(), device(dl360, "ceph-nvme-1"), AT)
    assert not v.ok
    assert list(v.evidence) == ["VMs holding it: z-ceph-1 (managed) -> z-ceph-1",
                          "definition of z-ceph-1: 0000:06:00.0 -> 0000:06:00.0 (unmanaged)"]
    assert drift.device_drift(baseline, host.facts(), device(dl360, "ceph-nvme-2"), AT).ok


def test_device_gone_from_its_address_drifts(host, baseline, dl360):
    host.remove(f"sys/bus/pci/devices/{NVME4}")
    v = drift.device_drift(baseline, host.facts(), device(dl360, "host-nvme-4"), AT)
    assert not v.ok
    assert list(v.evidence[:2]) == [f"address: {NVME4} -> (none)", "slot: 1 -> (none)"]


def test_disk_behind_its_by_id_changed_drifts(host, baseline, dl360):
    link = host.path("dev/disk/by-id/wwn-0x5000c500b1c2d3e4")
    link.unlink()
    os.symlink("../../sdb", link)
    v = drift.disk_drift(baseline, host.facts(), dl360.disks[0], AT)
    assert not v.ok
    assert v.evidence[0] == "wwn-0x5000c500b1c2d3e4 is: /dev/sda -> /dev/sdb"
    # z-gluster-1 names the same by-id path, which now leads to sdb, the disk of z-gluster-2 too
    assert "VMs holding it: z-gluster-1 -> z-gluster-1, z-gluster-2" in v.evidence


def test_cmdline_kernel_and_bios_changes_drift(host, baseline):
    host.replace("proc/cmdline", " iommu=pt", "")
    now = host.facts()
    v = drift.host_drift(baseline, now, AT)
    assert not v.ok and list(v.evidence) == [f"kernel command line: {baseline.cmdline} -> {now.cmdline}"]
    before = dataclasses.replace(baseline)
    before.system, now.system = {"bios_version": "P89 v2.76"}, {"bios_version": "P89 v3.00"}
    assert "bios version: P89 v2.76 -> P89 v3.00" in drift.host_drift(before, now, AT).evidence
    # Firmware a run could not read (no DMI facts in an older baseline) is not a difference.
    before.system = {}
    assert "bios" not in drift.host_drift(before, now, AT).found


def test_baseline_run_fails_only_what_drifted(host, tmp_path):
    base = tmp_path / "golive.json"
    assert run("--profile=dl360-gen9", f"--sysroot={host.root}", f"--save-facts={base}", "-q").returncode == 0
    proc = run("--profile=dl360-gen9", f"--sysroot={host.root}", f"--baseline={base}", "-q",
               f"--junitxml={tmp_path / 'same.xml'}")
    assert proc.returncode == 0, proc.output
    same = outcomes(tmp_path / "same.xml")
    assert same["test_no_drift[dl360-gen9-01]"] == "passed"
    assert same["test_device_no_drift[dl360-gen9-01-ceph-nvme-3]"] == "passed"
    assert same["test_host_device_no_drift[dl360-gen9-01-host-nvme-4]"] == "passed"
    assert same["test_disk_no_drift[dl360-gen9-01-gluster-hdd-2]"] == "passed"
    host.bind("0000:08:00.0", "nvme")
    proc = run("--profile=dl360-gen9", f"--sysroot={host.root}", f"--baseline={base}", "-q", "-rf",
               f"--junitxml={tmp_path / 'drift.xml'}")
    assert proc.returncode == 1
    failed = {k for k, v in outcomes(tmp_path / "drift.xml").items() if v == "failure"}
    assert failed == {"test_bound_to_vfio[dl360-gen9-01-ceph-nvme-3]",
                      "test_device_no_drift[dl360-gen9-01-ceph-nvme-3]"}
    assert "[no-drift] ceph-nvme-3 on dl360-gen9-01: driver: vfio-pci -> nvme" in proc.output


def test_host_missing_from_baseline_fails_and_says_so(host, tmp_path):
    base = tmp_path / "other.json"
    assert run("--profile=dl360-gen9", "--sysroot=samples/dl360-gen9-01", f"--save-facts={base}", "-q").returncode == 0
    renamed = host.root.rename(tmp_path / "node7")
    proc = run("--profile=dl360-gen9", f"--sysroot={renamed}", f"--baseline={base}", "-q", "-rfs",
               f"--junitxml={tmp_path / 'j.xml'}")
    assert proc.returncode == 1
    got = outcomes(tmp_path / "j.xml")
    assert got["test_no_drift[node7]"] == "failure"
    assert got["test_device_no_drift[node7-ceph-nvme-1]"] == "skipped"
    assert f"no baseline for node7 in {base} (it holds: dl360-gen9-01)" in proc.output


@pytest.mark.parametrize("extra", [["-k", "not drift"], ["-k", "drift and not test_no_drift"], ["-k", "not drift", "-n", "2"]])
def test_host_missing_from_baseline_fails_even_when_deselected(tmp_path, extra):
    base = tmp_path / "other.json"
    assert run("--profile=dl360-gen9", "--sysroot=samples/dl360-gen9-01", f"--save-facts={base}", "-q").returncode == 0
    copy = tmp_path / "node7"
    shutil.copytree(PROJECT / "samples" / "dl360-gen9-01", copy, symlinks=True)
    proc = run("--profile=dl360-gen9", f"--sysroot={copy}", f"--baseline={base}", "-q", *extra, timeout=300)
    counted = counts(proc.stdout)
    assert proc.returncode == 1 and counted.get("failed", 0) == 0, proc.output  # nothing failed, yet not ready
    assert "iommu-audit: not in the baseline, so not compared: node7 (see test_no_drift)" in proc.stdout
    # The host that is in the baseline passes the same deselected run.
    proc = run("--profile=dl360-gen9", "--sysroot=samples/dl360-gen9-01", f"--baseline={base}", "-q", *extra,
               timeout=300)  # -n 2 inside a loaded -n 2 run starts slowly
    assert proc.returncode == 0 and "not compared" not in proc.stdout, proc.output


def test_without_baseline_no_drift_check_is_collected():
    proc = run("--profile=dl360-gen9", "--sysroot=samples/dl360-gen9-01", "--co", "-q")
    assert proc.returncode == 0 and "drift" not in proc.output


def test_bad_baseline_is_a_usage_error(tmp_path):
    (tmp_path / "b.json").write_text("{}")
    proc = run("--profile=dl360-gen9", "--sysroot=samples/dl360-gen9-01", f"--baseline={tmp_path / 'b.json'}")
    assert proc.returncode == 4
    assert f"--baseline {tmp_path / 'b.json'}: not an iommu-audit facts file" in proc.output
    assert "Traceback" not in proc.output
