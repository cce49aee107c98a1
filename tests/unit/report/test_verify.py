"""verify.py: an altered byte anywhere fails verification; the embedded facts re-audit to the same hash."""

import json
import subprocess
import sys

import pytest

from iommu_audit.report import verify
from tests.conftest import PROJECT
from tests.unit.test_plugin import run


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "iommu_audit.report", *args], cwd=PROJECT, capture_output=True,
                          text=True, timeout=60)


def test_a_fresh_report_verifies(failing_report):
    proc = cli("verify", str(failing_report.html))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.startswith(f"OK: {failing_report.html} is unaltered")
    assert failing_report.doc["sha256"] in proc.stdout and "dl360-gen9-01 NOT READY" in proc.stdout
    assert cli("verify", str(failing_report.json)).returncode == 0


@pytest.mark.parametrize("where", ["verdict", "matrix cell", "embedded result", "seal", "first byte", "last byte"])
def test_one_altered_byte_fails_verification(tmp_path, failing_report, where):
    data = bytearray(failing_report.html.read_bytes())
    at = {"verdict": data.index(b"NOT READY") + 4,  # NOT READY -> NOT_READY
          "matrix cell": data.index(b"</span> FAIL</a>") + len(b"</span> F"),
          "embedded result": data.index(b'"status": "failed"', data.index(verify.DATA_OPEN.encode())) + 12,
          "seal": data.index(verify.SEAL_OPEN) + len(verify.SEAL_OPEN) + 10,
          "first byte": 0, "last byte": len(data) - 2}[where]
    data[at] = ord("_") if data[at] != ord("_") else ord("x")
    altered = tmp_path / "altered.html"
    altered.write_bytes(bytes(data))
    proc = cli("verify", str(altered))
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert proc.stdout.startswith(f"ALTERED: {altered}")
    if where == "embedded result":
        assert "content hash mismatch" in proc.stdout


def test_a_consistent_forgery_of_the_data_still_fails_the_seal(tmp_path, failing_report):
    """Edit a result and recompute the content hash: the file seal no longer matches."""
    doc, data = verify.load(failing_report.html)
    forged_doc = json.loads(json.dumps(doc))
    for r in forged_doc["judged"]["results"]:
        r["status"] = "passed"
    from iommu_audit.report import model
    forged_doc["sha256"] = model.content_hash(forged_doc["judged"])
    text = data.decode()
    start = text.index(verify.DATA_OPEN)
    end = text.index("</script>", start) + len("</script>")
    forged = tmp_path / "forged.html"
    forged.write_text(text[:start] + verify.embed(forged_doc) + text[end:])
    assert verify.verify(forged) == ["file seal mismatch: bytes of the file changed after it was written"]


def test_not_a_report_is_one_line_and_exit_2(tmp_path):
    other = tmp_path / "other.html"
    other.write_text("<html><body>hello</body></html>")
    proc = cli("verify", str(other))
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr == f"iommu-audit: {other}: no embedded iommu-audit data (is it a report written with --report?)\n"
    assert cli("verify", str(tmp_path / "missing.html")).stderr.endswith("cannot read it (No such file or directory)\n")


def test_embedded_facts_reaudit_to_the_same_matrix_and_hash(tmp_path, failing_report):
    facts = tmp_path / "facts.json"
    proc = cli("facts", str(failing_report.html), str(facts))
    assert proc.returncode == 0, proc.stderr
    again = tmp_path / "again.json"
    rerun = run(f"--profile={failing_report.profile}", f"--facts={facts}", f"--json={again}")
    assert rerun.returncode == failing_report.proc.returncode == 1
    before, after = failing_report.doc, json.loads(again.read_text())
    assert after["sha256"] == before["sha256"]
    assert [(r["id"], r["status"]) for r in after["judged"]["results"]] == \
        [(r["id"], r["status"]) for r in before["judged"]["results"]]
    assert after["run"]["mode"] == "saved facts" and before["run"]["mode"] == "sysroot copy"
    assert after["run"]["time"] != "" and after["hosts"][0]["verdict"] == before["hosts"][0]["verdict"]


def test_another_profile_gives_another_hash(tmp_path, failing_report):
    facts = tmp_path / "facts.json"
    verify.extract_facts(failing_report.html, facts)
    other = tmp_path / "other.yaml"
    other.write_text(failing_report.profile.read_text() + "\n# reviewed\n")
    out = tmp_path / "other.json"
    run(f"--profile={other}", f"--facts={facts}", f"--json={out}")
    assert json.loads(out.read_text())["sha256"] != failing_report.doc["sha256"]
