"""model.py: verdicts, counts, matrix cells, waivers and the content hash of real audit runs."""

import json

from iommu_audit.report import model
from tests.unit.report.conftest import BUNDLED, audit
from tests.unit.test_plugin import ALL_CHECKS


def cells(doc: dict) -> dict:
    return {(r["host"], r["requirement"], r["subject"]): r for r in doc["judged"]["results"]}


def test_compliant_sample_is_ready(sample_report):
    doc = sample_report.doc
    [host] = doc["hosts"]
    assert host["verdict"] == model.READY
    assert host["counts"]["passed"] == ALL_CHECKS and sum(host["counts"].values()) == ALL_CHECKS
    assert [c["name"] for c in host["columns"]] == ["host", "ceph-nvme-1", "ceph-nvme-2", "ceph-nvme-3",
                                                     "host-nvme-4", "gluster-hdd-1", "gluster-hdd-2"]
    assert host["facts"] == {
        "hostname": "dl360-gen9-01", "system_vendor": "HP", "product": "ProLiant DL360 Gen9", "serial": "CZJ71501AB",
        "bios_version": "P89", "bios_date": "10/21/2019", "cpu_vendor": "intel",
        "cpu_model": "Intel(R) Xeon(R) CPU E5-2640 v4 @ 2.40GHz", "kernel": "5.15.0-91-generic",
        "cmdline": "BOOT_IMAGE=/vmlinuz-5.15.0-91-generic root=/dev/mapper/vg0-root ro intel_iommu=on iommu=pt",
        "distro": "Ubuntu 22.04.3 LTS"}


def test_failing_copy_is_not_ready_with_its_finding(failing_report):
    doc = failing_report.doc
    [host] = doc["hosts"]
    assert failing_report.proc.returncode == 1  # the exit code stays the checks' own
    assert host["verdict"] == model.NOT_READY
    assert host["counts"] == {"passed": ALL_CHECKS - 2, "failed": 1, "error": 0, "not-checked": 0, "waived": 1,
                              "advisory": 0, "not-applicable": 0}
    c = cells(doc)
    boot = c[("dl360-gen9-01", "cmdline-persistent", None)]
    assert boot["status"] == "failed" and boot["severity"] == "required"
    assert "intel_iommu=on is missing" in boot["found"] and boot["expected"] == "intel_iommu=on iommu=pt"
    assert "/etc/default/grub: quiet splash" in boot["evidence"]
    assert boot["waiver"]["expires"] == "2020-01-31"  # the expired waiver is shown next to the failure
    nvme = c[("dl360-gen9-01", "bound-to-vfio", "ceph-nvme-1")]
    assert nvme["status"] == "waived" and "bound to nvme" in nvme["found"]
    assert nvme["waiver"]["approved_by"] == "j.doe (CHG-1042)"
    assert c[("dl360-gen9-01", "bound-to-vfio", "ceph-nvme-2")]["status"] == "passed"


def test_waivers_show_days_left_and_expiry(failing_report):
    valid, expired = failing_report.doc["waivers"]
    assert not valid["expired"] and valid["days_left"] > 0
    assert valid["applies_to"] == ["checks/test_devices.py::test_bound_to_vfio[dl360-gen9-01-ceph-nvme-1]"]
    assert expired["expired"] and expired["days_left"] < 0 and expired["subject"] is None


def test_a_waived_only_host_is_ready_with_waivers(tmp_path, broken_host):
    fixed_boot = broken_host.root.parent / "fixed-boot"
    import shutil
    shutil.copytree(broken_host.root, fixed_boot / "dl360-gen9-01", symlinks=True)
    grub = fixed_boot / "dl360-gen9-01" / "etc/default/grub"
    grub.write_text(grub.read_text().replace('"quiet splash"', '"intel_iommu=on iommu=pt"'))
    waiver = BUNDLED.replace("waivers: []", """waivers:
  - requirement: bound-to-vfio
    device: ceph-nvme-1
    reason: RMA case 5501
    expires: 2099-01-31
    approved_by: j.doe""")
    r = audit(tmp_path, fixed_boot / "dl360-gen9-01", waiver)
    assert r.proc.returncode == 0
    assert r.doc["hosts"][0]["verdict"] == model.READY_WITH_WAIVERS


def test_deselected_checks_are_not_checked_and_block_the_verdict(tmp_path):
    """A partial run (-k) is no go-live proof: what did not run shows as NOT CHECKED."""
    from tests.conftest import PROJECT
    r = audit(tmp_path, PROJECT / "samples" / "dl360-gen9-01", BUNDLED, "-k", "test_cmdline_iommu")
    assert r.proc.returncode == 0  # exit code unchanged: pytest's own rules
    host = r.doc["hosts"][0]
    assert host["verdict"] == model.NOT_READY
    assert host["counts"]["passed"] == 1 and host["counts"]["not-checked"] == ALL_CHECKS - 1
    assert cells(r.doc)[("dl360-gen9-01", "bound-to-vfio", "ceph-nvme-1")]["reason"].startswith("not run")


def test_unreachable_facts_are_not_checked(tmp_path, broken_host):
    """A host whose facts cannot be read: facts-gathered fails, every other check is NOT CHECKED."""
    facts = tmp_path / "cut.json"
    facts.write_text(json.dumps({"format": "iommu-audit-facts/1", "hosts": [
        {"name": "node1", "probe_output": "::iommu-audit:: probe 1\nhostname\tnode1\n"}]}))
    out = tmp_path / "out"
    out.mkdir()
    (out / "site.yaml").write_text(BUNDLED)
    from tests.unit.test_plugin import run
    proc = run(f"--profile={out / 'site.yaml'}", f"--facts={facts}", f"--json={out / 'r.json'}")
    doc = json.loads((out / "r.json").read_text())
    statuses = {r["status"] for r in doc["judged"]["results"] if r["requirement"] != "facts-gathered"}
    assert proc.returncode == 1 and doc["hosts"][0]["verdict"] == model.NOT_READY
    assert statuses == {"not-checked"} and doc["judged"]["facts"] == []
    assert doc["hosts"][0]["facts"] == {} and "cut short" in doc["hosts"][0]["error"]


def test_content_hash_covers_only_what_was_judged(sample_report, failing_report):
    a, b = sample_report.doc, failing_report.doc
    assert a["sha256"] == model.content_hash(a["judged"]) != b["sha256"]
    assert set(a["judged"]) == {"profile", "facts", "results"}
    changed = json.loads(json.dumps(a["judged"]))
    changed["results"][0]["found"] += " "
    assert model.content_hash(changed) != a["sha256"]
    assert "time" not in json.dumps(a["judged"]["results"][0])  # no run-specific field in a result
