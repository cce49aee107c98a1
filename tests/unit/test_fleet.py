"""Fleets: a profile per host (mapping file, Ansible inventory variable), pytest -n by host."""

import json
import re
import shutil
import xml.etree.ElementTree as ET

import pytest

from iommu_audit import fleet
from tests.conftest import PROJECT
from tests.sysroot import HostCopy
from tests.cli import assert_usage_error
from tests.unit.test_plugin import run

SECOND = """name: other-model
platform: {cpu_vendor: intel}
kernel: {cmdline_require: [iommu=pt, hugepages=64]}
devices:
  - {name: nic-1, address: "0000:02:00.0", id: "14e4:1657", vm: z-router}
"""


def outcomes(junit) -> dict[str, str]:
    out = {}
    for case in ET.parse(junit).getroot().iter("testcase"):
        kind = next((c.tag for c in case if c.tag in ("failure", "error", "skipped")), "passed")
        out[case.get("name")] = kind
    return out


@pytest.fixture
def rack(tmp_path):
    """Two copies of the sample host (node1, node2) and a second profile for node2."""
    node1, node2 = HostCopy(tmp_path / "node1"), HostCopy(tmp_path / "node2")
    (tmp_path / "other-model.yaml").write_text(SECOND)
    (tmp_path / "map.yaml").write_text(f'"node2": {tmp_path / "other-model.yaml"}\n')
    return tmp_path, node1, node2


def audit_rack(tmp_path, node1, node2, *extra, junit="junit.xml"):
    return run("--profile=dl360-gen9", f"--sysroot={node1.root},{node2.root}", f"--profile-map={tmp_path / 'map.yaml'}",
               f"--junitxml={tmp_path / junit}", "-p", "no:randomly", "-rfE", *extra)


def test_each_host_is_judged_by_its_own_profile(rack):
    tmp_path, node1, node2 = rack
    proc = audit_rack(tmp_path, node1, node2)
    assert proc.returncode == 1, proc.output
    assert "node1 (sysroot:" in proc.output and "profile dl360-gen9)" in proc.output
    assert "profile other-model)" in proc.output
    got = outcomes(tmp_path / "junit.xml")
    # node1: the DL360 devices, all green; node2: only other-model's NIC, and its own cmdline and VM demands.
    assert got["test_bound_to_vfio[node1-ceph-nvme-1]"] == "passed"
    assert "test_bound_to_vfio[node2-ceph-nvme-1]" not in got
    assert got["test_bound_to_vfio[node2-nic-1]"] == "failure"
    assert got["test_assigned_to_vm[node2-nic-1]"] == "failure"
    assert got["test_cmdline_iommu[node1]"] == "passed" and got["test_cmdline_iommu[node2]"] == "failure"
    assert "hugepages=64" in proc.output
    failed = {k for k, v in got.items() if v == "failure"}
    assert failed and all("node2" in k for k in failed)
    # other-model has no disks and no host devices: none are checked on node2
    assert not [k for k in got if k.startswith(("test_disk_", "test_host_device_kept")) and "node2" in k]


def test_parallel_run_groups_hosts_per_worker_and_equals_serial(rack):
    tmp_path, node1, node2 = rack
    serial = audit_rack(tmp_path, node1, node2, junit="serial.xml")
    parallel = audit_rack(tmp_path, node1, node2, "-n", "2", "-v", f"--save-facts={tmp_path / 'facts.json'}",
                          junit="parallel.xml")
    assert serial.returncode == parallel.returncode == 1
    assert outcomes(tmp_path / "parallel.xml") == outcomes(tmp_path / "serial.xml")
    # Every check of one host ran on one worker: its facts were gathered there, once.
    workers = {}
    for gw, host in re.findall(r"\[(gw\d+)\] .*? checks/test_\w+\.py::test_\w+\[(node\d)", parallel.output):
        workers.setdefault(host, set()).add(gw)
    assert set(workers) == {"node1", "node2"} and all(len(w) == 1 for w in workers.values()), workers
    assert workers["node1"] != workers["node2"]
    # The controller writes --save-facts once, with the hosts every worker gathered.
    saved = json.loads((tmp_path / "facts.json").read_text())
    assert sorted(h["name"] for h in saved["hosts"]) == ["node1", "node2"]


def test_ansible_inventory_variable_chooses_the_profile(tmp_path):
    """ansible:// hosts with a local connection: this machine, seen as two inventory hosts."""
    pytest.importorskip("ansible")
    (tmp_path / "other-model.yaml").write_text(SECOND)
    (tmp_path / "inventory.yml").write_text(f"""all:
  children:
    rack1:
      hosts:
        kvm-a: {{ansible_connection: local}}
        kvm-b: {{ansible_connection: local, iommu_audit_profile: {tmp_path / 'other-model.yaml'}}}
""")
    proc = run("--profile=dl360-gen9", "--hosts=ansible://rack1", f"--ansible-inventory={tmp_path / 'inventory.yml'}",
               f"--junitxml={tmp_path / 'j.xml'}", "--co", "-q", timeout=120)
    assert proc.returncode == 0, proc.output
    assert "test_bound_to_vfio[kvm-a-ceph-nvme-1]" in proc.output
    assert "test_bound_to_vfio[kvm-b-nic-1]" in proc.output and "kvm-b-ceph-nvme-1" not in proc.output


def test_no_profile_needed_when_every_host_has_one(rack):
    tmp_path, node1, node2 = rack
    (tmp_path / "map.yaml").write_text(f'"node1": dl360-gen9\n"node*": {tmp_path / "other-model.yaml"}\n')
    proc = run(f"--sysroot={node1.root},{node2.root}", f"--profile-map={tmp_path / 'map.yaml'}",
               f"--junitxml={tmp_path / 'j.xml'}", "-p", "no:randomly")
    assert proc.returncode == 1, proc.output
    got = outcomes(tmp_path / "j.xml")
    assert got["test_bound_to_vfio[node1-ceph-nvme-1]"] == "passed"
    assert got["test_bound_to_vfio[node2-nic-1]"] == "failure" and "test_bound_to_vfio[node2-ceph-nvme-1]" not in got
    # The run's profile (report title, header) is the first host's.
    assert "iommu-audit profile: dl360-gen9 (" in proc.output and "profile other-model)" in proc.output


def test_the_report_of_a_run_without_profile_verifies(rack):
    from iommu_audit.report import verify
    tmp_path, node1, node2 = rack
    (tmp_path / "map.yaml").write_text(f'"node1": dl360-gen9\n"node*": {tmp_path / "other-model.yaml"}\n')
    proc = run(f"--sysroot={node1.root},{node2.root}", f"--profile-map={tmp_path / 'map.yaml'}",
               f"--html={tmp_path / 'r.html'}", "--self-contained-html")
    assert proc.returncode == 1, proc.output
    assert verify.verify(tmp_path / "r.html") == []


def test_a_host_left_without_profile_is_a_usage_error(rack):
    tmp_path, node1, node2 = rack  # map.yaml names node2 only
    proc = run(f"--sysroot={node1.root},{node2.root}", f"--profile-map={tmp_path / 'map.yaml'}")
    assert_usage_error(proc, "host node1 has no profile: give --profile NAME for every host",
                       "--profile-map FILE", "inventory variable iommu_audit_profile")


def test_inventory_variables_alone_give_every_host_its_profile(tmp_path):
    pytest.importorskip("ansible")
    (tmp_path / "other-model.yaml").write_text(SECOND)
    inventory = tmp_path / "inventory.yml"
    inventory.write_text(f"""all:
  children:
    rack1:
      vars: {{iommu_audit_profile: dl360-gen9}}
      hosts:
        kvm-a: {{ansible_connection: local}}
        kvm-b: {{ansible_connection: local, iommu_audit_profile: {tmp_path / 'other-model.yaml'}}}
    spare:
      hosts:
        kvm-c: {{ansible_connection: local}}
""")
    proc = run("--hosts=ansible://rack1", f"--ansible-inventory={inventory}", "--co", "-q", timeout=120)
    assert proc.returncode == 0, proc.output
    assert "test_bound_to_vfio[kvm-a-ceph-nvme-1]" in proc.output and "test_bound_to_vfio[kvm-b-nic-1]" in proc.output
    proc = run("--hosts=ansible://all", f"--ansible-inventory={inventory}", "--co", "-q", timeout=120)
    assert_usage_error(proc, "host kvm-c has no profile")


def test_unreachable_host_is_one_failure_and_the_others_finish(rack, tmp_path):
    if shutil.which("ssh") is None:
        pytest.skip("no ssh client on this machine")
    _, node1, _ = rack
    # One inventory: a host behind a closed port, and a host read from a saved facts file is not
    # possible in one run, so the reachable host is this machine (local connection).
    pytest.importorskip("ansible")
    (tmp_path / "inventory.yml").write_text("""all:
  hosts:
    down-1: {ansible_host: 127.0.0.1, ansible_port: 1, ansible_user: root,
             ansible_ssh_common_args: "-o BatchMode=yes -o ConnectTimeout=3"}
    up-1: {ansible_connection: local}
""")
    proc = run("--profile=dl360-gen9", "--hosts=ansible://all", f"--ansible-inventory={tmp_path / 'inventory.yml'}",
               f"--junitxml={tmp_path / 'j.xml'}", "-n", "2", "-rfE", timeout=120)
    got = outcomes(tmp_path / "j.xml")
    down = {k: v for k, v in got.items() if "down-1" in k}
    assert down["test_facts_gathered[down-1]"] == "failure"
    assert [k for k, v in down.items() if v != "skipped"] == ["test_facts_gathered[down-1]"]
    assert "Connection refused" in proc.output and "down-1" in proc.output
    assert got["test_facts_gathered[up-1]"] == "passed"  # the other host was read and judged
    assert len([k for k in got if "up-1" in k]) == len(down)


def test_profile_map_errors_are_one_line(rack):
    tmp_path, node1, node2 = rack
    (tmp_path / "map.yaml").write_text("node2: no-such-profile\n")
    proc = audit_rack(tmp_path, node1, node2)
    assert proc.returncode == 4
    assert "no-such-profile.yaml: no such profile" in proc.output and "(profile of host node2, from --profile-map" in proc.output
    (tmp_path / "map.yaml").write_text("- node2\n")
    proc = audit_rack(tmp_path, node1, node2)
    assert proc.returncode == 4 and "expected a mapping of host name (or pattern) to profile" in proc.output
    assert "Traceback" not in proc.output


@pytest.mark.parametrize("test_id, host", [
    ("checks/test_host.py::test_facts_gathered[node1]", "node1"),
    ("checks/test_devices.py::test_bound_to_vfio[node1-ceph-nvme-1]", "node1"),
    ("checks/test_devices.py::test_bound_to_vfio[node1-x-nic-1]", "node1-x"),  # longest host name wins
    ("checks/test_devices.py::test_bound_to_vfio[node10-nic]", None),
])
def test_host_of_test_id(test_id, host):
    assert fleet.host_of(test_id, ["node1", "node1-x"]) == host
