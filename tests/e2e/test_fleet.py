"""Fleets on real kernels: two guests booted once for the module.

e2e-fleet-a is a ready host (VT-d on, one NVMe on vfio-pci for z-ceph-1, kept by driverctl,
defined by a real libvirtd); e2e-fleet-b has intel_iommu=off. Audited as a user does: plain
--hosts, an Ansible inventory with a profile per host and -n 2, --baseline drift, and
`iommu-audit discover` over SSH.
"""

import json
import re
import subprocess
import sys

import pytest
import yaml

from iommu_audit.report import verify
from tests.e2e.audit_run import PROJECT, QEMU_NVME_ID, audit, put_file, put_vfio_override, ssh_args, write_profile

GRUB = 'GRUB_DEFAULT=0\nGRUB_CMDLINE_LINUX_DEFAULT="intel_iommu=on"\nGRUB_CMDLINE_LINUX=""\n'


@pytest.fixture(scope="module")
def rack(boot_guest, libvirtd_server):
    good = boot_guest("e2e-fleet-a", iommu="intel", cmdline_extra="intel_iommu=on", nvme=2)
    bad = boot_guest("e2e-fleet-b", iommu="intel", cmdline_extra="intel_iommu=off", nvme=1)
    addr = good.nvme_addresses[0]
    good.bind_vfio(addr)
    put_vfio_override(good, addr)
    libvirtd_server.define_domain("z-ceph-1")
    libvirtd_server.attach_hostdev("z-ceph-1", addr)
    put_file(good, "/etc/libvirt/qemu/z-ceph-1.xml", libvirtd_server.dumpxml("z-ceph-1"))
    put_file(good, "/etc/default/grub", GRUB)
    return good, bad


def ceph(guest) -> dict:
    return {"name": "ceph-nvme-1", "address": guest.nvme_addresses[0], "id": QEMU_NVME_ID, "vm": "z-ceph-1"}


def test_plain_hosts_one_compliant_one_not(rack, tmp_path):
    good, bad = rack
    run = audit(tmp_path, write_profile(tmp_path / "fleet.yaml", devices=[ceph(good)]), *ssh_args(good, bad))
    assert run.rc == 1
    assert run.outcome("test_cmdline_iommu[e2e-fleet-a]") == "passed"
    assert run.outcome("test_iommu_active[e2e-fleet-a]") == "passed"
    assert run.outcome("test_bound_to_vfio[e2e-fleet-a-ceph-nvme-1]") == "passed"
    assert run.outcome("test_cmdline_iommu[e2e-fleet-b]") == "failed"
    assert run.outcome("test_iommu_active[e2e-fleet-b]") == "failed"
    assert run.outcome("test_bound_to_vfio[e2e-fleet-b-ceph-nvme-1]") == "failed"
    assert "e2e-fleet-b" in run.messages["test_iommu_active[e2e-fleet-b]"]


@pytest.fixture(scope="module")
def golive(rack, tmp_path_factory):
    """An Ansible inventory run with -n 2, a profile per host (group and host variable); its
    --save-facts file is the go-live baseline of the drift tests."""
    good, bad = rack
    tmp = tmp_path_factory.mktemp("inventory")
    write_profile(tmp / "ceph-node.yaml", devices=[ceph(good)])
    kept = {"name": "system-nvme", "address": bad.nvme_addresses[0], "id": QEMU_NVME_ID, "host": True}
    write_profile(tmp / "plain-node.yaml", devices=[kept])
    (tmp / "inventory.yml").write_text(yaml.safe_dump({"all": {"children": {"rack1": {
        "vars": {"ansible_user": "root", "iommu_audit_profile": str(tmp / "ceph-node.yaml")},
        "hosts": {good.name: None, bad.name: {"iommu_audit_profile": str(tmp / "plain-node.yaml")}}}}}}))
    _, config = ssh_args(good, bad)  # hosts are ssh aliases: the inventory names are what ssh resolves
    # No --profile: the inventory gives every host its profile.
    run = audit(tmp, None, "--hosts=ansible://rack1", f"--ansible-inventory={tmp / 'inventory.yml'}",
                config, "-n", "2", "-vv", f"--save-facts={tmp / 'golive.json'}",
                f"--html={tmp / 'golive.html'}", "--self-contained-html", f"--json={tmp / 'golive-report.json'}")
    return run, tmp / "golive.json"


def test_inventory_hosts_judged_by_their_own_profiles_in_parallel(rack, golive):
    run, saved = golive
    assert run.rc == 1, run.output
    # e2e-fleet-a: the ceph-node profile (group variable), all green.
    assert {t for t in run.failed() if "e2e-fleet-a" in t} == set()
    assert run.outcome("test_bound_to_vfio[e2e-fleet-a-ceph-nvme-1]") == "passed"
    assert run.outcome("test_assigned_to_vm[e2e-fleet-a-ceph-nvme-1]") == "passed"
    # e2e-fleet-b: the plain-node profile (host variable): its NVMe stays with the host, no ceph device.
    assert run.outcome("test_host_device_kept[e2e-fleet-b-system-nvme]") == "passed"
    assert not [t for t in run.outcomes if t.startswith("test_bound_to_vfio[e2e-fleet-b")]
    assert run.outcome("test_iommu_active[e2e-fleet-b]") == "failed"
    assert "profile ceph-node" in run.output and "profile plain-node" in run.output
    # Each host on one worker (so probed once), the two hosts on different workers.
    workers = {}
    for gw, host in re.findall(r"\[(gw\d)\] .*?::test_\w+\[(e2e-fleet-[ab])", run.output):
        workers.setdefault(host, set()).add(gw)
    assert len(workers) == 2 and all(len(w) == 1 for w in workers.values()) and workers["e2e-fleet-a"] != workers["e2e-fleet-b"]
    assert sorted(h["name"] for h in json.loads(saved.read_text())["hosts"]) == ["e2e-fleet-a", "e2e-fleet-b"]


def test_drift_after_rebind_and_after_vm_definition_change(rack, golive, libvirtd_server, tmp_path):
    good, _ = rack
    _, baseline = golive
    profile = write_profile(tmp_path / "ceph-node.yaml", devices=[ceph(good)])
    addr = good.nvme_addresses[0]
    drift_id = "test_device_no_drift[e2e-fleet-a-ceph-nvme-1]"

    assert good.unbind_vfio(addr) == "nvme"
    try:
        rebound = audit(tmp_path, profile, *ssh_args(good), f"--baseline={baseline}")
    finally:
        good.bind_vfio(addr)
    assert rebound.outcome(drift_id) == "failed"
    assert "driver: vfio-pci -> nvme" in rebound.messages[drift_id]
    assert rebound.outcome("test_no_drift[e2e-fleet-a]") == "passed"

    # A second VM definition now also passes the device (written by the real libvirtd).
    libvirtd_server.define_domain("z-other")
    libvirtd_server.attach_hostdev("z-other", addr)
    put_file(good, "/etc/libvirt/qemu/z-other.xml", libvirtd_server.dumpxml("z-other"))
    try:
        edited = audit(tmp_path, profile, *ssh_args(good), f"--baseline={baseline}")
    finally:
        good.run("rm -f /etc/libvirt/qemu/z-other.xml", check=True)
        libvirtd_server.undefine("z-other")
    assert edited.failed() == {drift_id, "test_assigned_to_vm[e2e-fleet-a-ceph-nvme-1]"}, edited.output
    assert "VMs holding it: z-ceph-1 (managed) -> z-ceph-1 (managed), z-other (managed)" in edited.messages[drift_id]


def test_discover_over_ssh_gives_a_profile_that_audits_the_guest(rack, tmp_path):
    good, _ = rack
    out = tmp_path / "e2e-fleet-a.yaml"
    _, config = ssh_args(good)
    proc = subprocess.run([sys.executable, "-m", "iommu_audit.discover", "discover", str(out),
                           f"--hosts=ssh://{good.name}", config],
                          cwd=PROJECT, capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stderr
    doc = yaml.safe_load(out.read_text())
    by_address = {d["address"]: d for d in doc["devices"]}
    # The VM libvirt names for the vfio-bound NVMe; the other NVMe (serial read live) and the NIC stay on the host.
    assert by_address[good.nvme_addresses[0]]["vm"] == "z-ceph-1"
    assert by_address[good.nvme_addresses[1]]["host"] is True
    assert by_address[good.nvme_addresses[1]]["serial"] == good.nvme_serials[1]
    assert by_address[good.nic_address]["host"] is True
    run = audit(tmp_path, out, *ssh_args(good))
    assert run.rc == 0, run.output
    assert run.outcome(f"test_bound_to_vfio[e2e-fleet-a-{by_address[good.nvme_addresses[0]]['name']}]") == "passed"
    assert run.outcome(f"test_host_device_kept[e2e-fleet-a-{by_address[good.nic_address]['name']}]") == "passed"


def test_one_report_for_the_fleet_with_a_verdict_per_host(golive):
    """The inventory run's report (-n 2, a profile per host): one file, a matrix and verdict per host."""
    _, saved = golive
    doc = json.loads((saved.parent / "golive-report.json").read_text())
    hosts = {h["name"]: h for h in doc["hosts"]}
    assert sorted(hosts) == ["e2e-fleet-a", "e2e-fleet-b"] and doc["run"]["mode"] == "SSH"  # inventory hosts are reached over SSH
    assert hosts["e2e-fleet-a"]["verdict"] == "READY" and hosts["e2e-fleet-b"]["verdict"] == "NOT READY"
    assert hosts["e2e-fleet-a"]["profile"] == "ceph-node" and hosts["e2e-fleet-b"]["profile"] == "plain-node"
    status = {(r["host"], r["requirement"], r["subject"]): r["status"] for r in doc["judged"]["results"]}
    assert status[("e2e-fleet-b", "iommu-active", None)] == "failed"
    assert status[("e2e-fleet-a", "bound-to-vfio", "ceph-nvme-1")] == "passed"
    assert "intel_iommu=off" in hosts["e2e-fleet-b"]["facts"]["cmdline"]
    assert hosts["e2e-fleet-a"]["facts"]["system_vendor"] == "QEMU"  # DMI read from the guest's real sysfs
    page = saved.parent / "golive.html"
    text = page.read_text()
    assert text.count('class="matrix"') == 2 and 'id="matrix-e2e-fleet-b"' in text
    assert verify.verify(page) == []
