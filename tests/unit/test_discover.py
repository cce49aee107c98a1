"""`iommu-audit discover`: the starter profile from a host copy, and its round trip through the audit."""

import subprocess
import sys

import pytest
import yaml

from iommu_audit import discover, profile as profiles
from tests.conftest import PROJECT
from tests.unit.test_plugin import run

NVME1 = "0000:06:00.0"


def discover_cmd(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "iommu_audit.discover", "discover", *args], cwd=PROJECT,
                          capture_output=True, text=True, timeout=60)


def entry(doc: dict, address: str) -> dict:
    return next(d for d in doc["devices"] if d["address"] == address)


def test_sample_host_profile_names_vms_slots_groups_and_disks(host, tmp_path):
    out = tmp_path / "node1.yaml"
    proc = discover_cmd(str(out), f"--sysroot={host.root}")
    assert proc.returncode == 0, proc.stderr
    text = out.read_text()
    doc = yaml.safe_load(text)
    assert doc["name"] == "node1" and doc["platform"]["cpu_vendor"] == "intel"
    # Passed through now: the VM its libvirt definition names, and the slot of the M.2 switch card.
    assert entry(doc, NVME1) == {"name": "z-ceph-1-nvme-06-00-0", "address": NVME1, "id": "144d:a808",
                                 "slot": "1", "vm": "z-ceph-1"}
    # The host's own NVMe (nvme driver, in no VM) stays with the host, with its serial to verify.
    assert entry(doc, "0000:09:00.0")["host"] is True
    assert entry(doc, "0000:09:00.0")["serial"] == "S4EWNX0R712345F"
    # Bridges are not endpoints; the LPC and every NIC function are.
    addresses = [d["address"] for d in doc["devices"]]
    assert "0000:05:08.0" not in addresses and "0000:00:00.0" not in addresses
    assert {"0000:00:1f.0", "0000:02:00.3"} <= set(addresses)
    # Group mates as comments, whole disks by by-id (wwn preferred), the system disk left commented out.
    assert "# IOMMU group 7: 0000:02:00.0 [14e4:1657] Ethernet controller, driver tg3, 0000:02:00.1" in text
    assert doc["disks"] == [{"name": "z-gluster-1-disk-sda", "by_id": "wwn-0x5000c500b1c2d3e4", "vm": "z-gluster-1"},
                            {"name": "z-gluster-2-disk-sdb", "by_id": "wwn-0x5000c500b1c2d3f5", "vm": "z-gluster-2"}]
    assert '#   by_id: "nvme-eui.0025385791b0e1a2"' in text
    assert profiles.load(str(out), PROJECT / "profiles").name == "node1"


def test_round_trip_discovered_profile_passes_the_audit_of_the_same_host(host, tmp_path):
    out = tmp_path / "rt.yaml"
    assert discover_cmd(str(out), f"--sysroot={host.root}").returncode == 0
    proc = run(f"--profile={out}", f"--sysroot={host.root}", "-q", "-rfE")
    assert proc.returncode == 0, proc.output
    passed = int(proc.output.rsplit(" passed", 1)[0].rsplit(None, 1)[-1])
    assert passed >= 45  # every endpoint and disk was really checked
    # Not green by construction: the same profile fails once the host drifts from what was discovered.
    host.bind(NVME1, "nvme")
    proc = run(f"--profile={out}", f"--sysroot={host.root}", "-q", "-rfE")
    assert proc.returncode == 1
    assert "test_bound_to_vfio[dl360-gen9-01-z-ceph-1-nvme-06-00-0]" in proc.output


def test_device_on_vfio_in_no_vm_must_be_filled_in(host, tmp_path):
    host.remove("etc/libvirt/qemu/z-ceph-2.xml")
    host.remove("run/libvirt/qemu/z-ceph-2.xml")
    out = tmp_path / "p.yaml"
    assert discover_cmd(str(out), f"--sysroot={host.root}").returncode == 0
    assert entry(yaml.safe_load(out.read_text()), "0000:07:00.0")["vm"] == "FILL-IN"
    proc = run(f"--profile={out}", f"--sysroot={host.root}", "-q", "-rfE")
    assert proc.returncode == 1 and "no libvirt domain named FILL-IN" in proc.output


def test_never_overwrites_without_force(host, tmp_path):
    out = tmp_path / "mine.yaml"
    out.write_text("hand-written\n")
    proc = discover_cmd(str(out), f"--sysroot={host.root}")
    assert proc.returncode == 4
    assert proc.stderr == f"iommu-audit discover: {out} exists: choose another file or add --force to overwrite it\n"
    assert out.read_text() == "hand-written\n"
    assert discover_cmd(str(out), f"--sysroot={host.root}", "--force").returncode == 0
    assert out.read_text().startswith("# Starter profile discovered")


@pytest.mark.parametrize("args, message", [
    (["--sysroot=/nonexistent"], "--sysroot /nonexistent: not a host copy (no proc/ or sys/ inside)"),
    (["--hosts=ssh://a,ssh://b"], "discover reads one host; run it once per host"),
    (["--hosts=ssh://a", "--sysroot=/x"], "--hosts and --sysroot cannot be combined"),
    (["--hosts=bogus://x"], "--hosts bogus://x:"),
])
def test_bad_input_is_one_line(tmp_path, args, message):
    proc = discover_cmd(str(tmp_path / "p.yaml"), *args)
    assert proc.returncode == 4
    assert message in proc.stderr and proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    assert not (tmp_path / "p.yaml").exists()


def test_unreachable_host_exits_1_naming_it(tmp_path):
    proc = discover_cmd(str(tmp_path / "p.yaml"), "--hosts=ssh://root@127.0.0.1:1")
    assert proc.returncode == 1
    assert proc.stderr.startswith("iommu-audit discover: ssh://root@127.0.0.1:1: ") and proc.stderr.count("\n") == 1


def test_non_x86_host_is_refused(host, tmp_path):
    host.replace("proc/cpuinfo", "GenuineIntel", "ARM")
    proc = discover_cmd(str(tmp_path / "p.yaml"), f"--sysroot={host.root}")
    assert proc.returncode == 4 and "is neither Intel nor AMD" in proc.stderr


def test_console_script_requires_the_subcommand(capsys):
    assert discover.main([]) == 4
    assert "usage: iommu-audit discover" in capsys.readouterr().err
