"""plugin.py: --report names and announces its file, JUnit carries the verdicts, xdist changes nothing."""

import json
import re
import xml.etree.ElementTree as ET

from iommu_audit.report import verify
from tests.conftest import PROJECT
from tests.unit.test_plugin import ALL_CHECKS, assert_clean, run


def test_report_option_writes_a_named_verified_file():
    proc = run("--profile=dl360-gen9", "--sysroot=samples/dl360-gen9-01", "--report", "-q")
    assert_clean(proc)
    assert proc.returncode == 0
    shown = re.search(r"^report: (reports/dl360-gen9-\d{8}T\d{6}Z\.html)  \(check it with: iommu-audit verify \1\)$",
                      proc.stdout, re.M)
    assert shown, proc.stdout
    path = PROJECT / shown[1]
    try:
        assert f"dl360-gen9-01: READY ({ALL_CHECKS} passed)" in proc.stdout
        assert verify.verify(path) == []
        assert "<title id=\"head-title\">Go-live IOMMU/VFIO compliance: dl360-gen9</title>" in path.read_text()
    finally:
        path.unlink()


def test_junit_keeps_properties_and_adds_the_verdicts(failing_report):
    root = ET.parse(failing_report.junit).getroot()
    suite = {p.get("name"): p.get("value") for p in root.find("testsuite").find("properties")}
    assert suite == {"iommu-audit.profile": "dl360-gen9", "iommu-audit.sha256": failing_report.doc["sha256"],
                     "iommu-audit.profile_sha256": failing_report.doc["run"]["profile_sha256"],
                     "iommu-audit.verdict.dl360-gen9-01": "NOT READY"}
    case = next(c for c in root.iter("testcase") if c.get("name") == "test_cmdline_persistent[dl360-gen9-01]")
    props = {p.get("name"): p.get("value") for p in case.find("properties")}
    assert props["host"] == "dl360-gen9-01" and props["subject"] == "host" and props["scope"] == "host"
    assert props["requirement"] == "cmdline-persistent" and "quiet splash" in props["evidence"]


def test_parallel_hosts_give_the_same_results_and_facts(tmp_path, broken_host):
    roots = f"--sysroot={broken_host.root},samples/dl360-gen9-01"
    serial, parallel = tmp_path / "serial.json", tmp_path / "parallel.json"
    run("--profile=dl360-gen9", roots, f"--json={serial}")
    page = tmp_path / "parallel.html"
    proc = run("--profile=dl360-gen9", roots, "-n", "2", f"--json={parallel}", f"--html={page}",
               "--self-contained-html", timeout=600)  # workers start slowly
    assert_clean(proc)
    assert verify.verify(page) == []  # written and sealed once, by the controller
    a, b = json.loads(serial.read_text()), json.loads(parallel.read_text())
    assert a["judged"]["results"] == b["judged"]["results"] and len(b["judged"]["facts"]) == 2
    assert [h["facts"] for h in a["hosts"]] == [h["facts"] for h in b["hosts"]]
    assert [h["verdict"] for h in b["hosts"]] == ["NOT READY", "READY"]
