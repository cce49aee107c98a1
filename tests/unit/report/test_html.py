"""html.py: reports rendered by a real headless browser (Debian's chromium), printed to PDF, read back.

Chromium comes from the distribution (scripts/install.sh --tests); nothing is downloaded at test
time. Without it the browser tests skip, except under CI=true where they fail.
"""

import os
import re
import shutil
import struct
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest

from iommu_audit.report import html, model, verify
from tests.unit.report.conftest import INJECTION
from tests.unit.test_plugin import ALL_CHECKS

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run"]


def browser(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    if not CHROMIUM or not shutil.which("pdftotext"):
        if os.environ.get("CI") == "true":
            pytest.fail("chromium and poppler-utils are needed: bash scripts/install.sh --tests")
        pytest.skip("chromium or poppler-utils not installed (bash scripts/install.sh --tests)")
    profile = tmp_path / f"chromium-{len(list(tmp_path.glob('chromium-*')))}"
    return subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={profile}", *args], capture_output=True, text=True,
                          timeout=120, check=True)


class Texts(HTMLParser):
    """The text inside each element that has an id, and the ids and hrefs seen, from a DOM dump."""

    def __init__(self, markup: str):
        super().__init__()
        self.stack: list[tuple[str, str | None]] = []
        self.text: dict[str, str] = {}
        self.ids: list[str] = []
        self.hrefs: list[str] = []
        self.tags: list[str] = []
        self.feed(markup)

    def handle_starttag(self, tag, attrs):
        self.handle_data(" ")  # element boundaries separate words, as a reader sees them
        a = dict(attrs)
        self.tags.append(tag)
        if a.get("id"):
            self.ids.append(a["id"])
            self.text.setdefault(a["id"], "")
        if a.get("href"):
            self.hrefs.append(a["href"])
        if tag not in ("br", "img", "meta", "input", "link"):
            self.stack.append((tag, a.get("id")))

    def handle_endtag(self, tag):
        self.handle_data(" ")
        while self.stack:
            t, _ = self.stack.pop()
            if t == tag:
                break

    def handle_data(self, data):
        for _, i in self.stack:
            if i:
                self.text[i] += data


def dom(tmp_path: Path, report: Path) -> Texts:
    return Texts(browser(tmp_path, "--dump-dom", report.as_uri()).stdout)


def squash(text: str) -> str:
    return " ".join(text.split())


def test_failing_report_renders_matrix_evidence_and_verdict(tmp_path, failing_report):
    page = dom(tmp_path, failing_report.html)
    matrix = squash(page.text["matrix-dl360-gen9-01"])
    assert matrix.startswith("Compliance matrix: dl360-gen9-01 NOT READY")
    assert "✘ FAIL" in matrix and "W WAIVED" in matrix and matrix.count("✔ PASS") == ALL_CHECKS - 2
    # The failing cell links to its finding, which holds the evidence read from the host.
    boot = model.anchor({"host": "dl360-gen9-01", "requirement": "cmdline-persistent", "subject": None})
    assert f"#{boot}" in page.hrefs
    finding = squash(page.text[boot])
    assert finding.startswith("✘ FAIL Boot configuration keeps the required kernel arguments — dl360-gen9-01")
    assert "Evidence /etc/default/grub: quiet splash" in finding
    assert "Expected intel_iommu=on iommu=pt" in finding and "EXPIRED on 2020-01-31" in finding
    assert squash(page.text["verdicts"]).startswith("Verdict Host Verdict Checks Audited from dl360-gen9-01 NOT READY")
    # Every cell of every matrix leads somewhere; pytest-html's own script ran (its results table rows).
    assert all(h[1:] in page.ids for h in page.hrefs if h.startswith("#"))
    assert squash(page.text["head-title"]) == "Go-live IOMMU/VFIO compliance: dl360-gen9"
    assert "checks/test_kernel.py::test_cmdline_persistent[dl360-gen9-01]" in page.text["results-table"]
    assert "test_cmdline_persistent" not in Texts(failing_report.text).text["results-table"]  # app.js put it there
    # Host text stays text: nothing from the host became markup or closed the data script.
    assert "injected" not in page.ids and INJECTION not in failing_report.text
    assert verify.load(failing_report.html)[0]["judged"] == failing_report.doc["judged"]


def test_sample_report_reads_ready(tmp_path, sample_report):
    page = dom(tmp_path, sample_report.html)
    assert squash(page.text["matrix-dl360-gen9-01"]).startswith("Compliance matrix: dl360-gen9-01 READY")
    assert "FAIL" not in page.text["iommu-audit"] and "NOT READY" not in page.text["iommu-audit"]
    host = squash(page.text["host-dl360-gen9-01"])
    assert "System HP ProLiant DL360 Gen9 Serial number CZJ71501AB BIOS P89 10/21/2019" in host
    assert "Distribution Ubuntu 22.04.3 LTS Kernel 5.15.0-91-generic" in host


def test_screenshot(tmp_path, failing_report):
    shot = tmp_path / "report.png"
    browser(tmp_path, "--window-size=1280,1600", "--hide-scrollbars", f"--screenshot={shot}",
            failing_report.html.as_uri())
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and struct.unpack(">II", data[16:24]) == (1280, 1600)
    assert len(data) > 50_000  # a rendered page, not a blank one


def test_print_to_pdf_puts_the_matrix_on_page_one(tmp_path, failing_report):
    pdf = tmp_path / "report.pdf"
    browser(tmp_path, "--no-pdf-header-footer", f"--print-to-pdf={pdf}", failing_report.html.as_uri())
    pages = int(re.search(r"Pages:\s+(\d+)", subprocess.run(["pdfinfo", str(pdf)], capture_output=True,
                                                            text=True, check=True).stdout)[1])
    first = squash(subprocess.run(["pdftotext", "-f", "1", "-l", "1", str(pdf), "-"], capture_output=True,
                                  text=True, check=True).stdout)
    assert "Go-live IOMMU/VFIO compliance: dl360-gen9" in first and "Compliance matrix: dl360-gen9-01" in first
    for req in failing_report.doc["requirements"].values():  # every row of the matrix, the last one too
        assert req["title"] in first, req["title"]
    assert "✘ FAIL" in first and "NOT READY" in first
    assert "Findings" not in first  # findings start on their own page
    whole = squash(subprocess.run(["pdftotext", str(pdf), "-"], capture_output=True, text=True, check=True).stdout)
    assert pages >= 3 and "Sign-off" in whole and "Signature" in whole
    assert "results-table" not in whole and "Show all details" not in whole  # pytest-html's controls: screen only


FIX_RUN = {  # one host's --fix run as iommu_audit/fix records it (NOTES.md, "fix:")
    "run_id": "20261201T023000Z-1a2b", "host": "dl360-gen9-01", "source": "ssh://root@node1", "outcome": "applied",
    "log_dir": "/var/log/iommu-audit/20261201T023000Z-1a2b", "reboot_required": True,
    "steps": [
        {"requirement": "bound-to-vfio", "subject": "ceph-nvme-1", "summary": "bind 0000:06:00.0 to vfio-pci",
         "kind": "change", "args": ["--address", "0000:06:00.0"], "files": [],
         "commands": ["driverctl set-override 0000:06:00.0 vfio-pci"], "repairs": ["bound-to-vfio"],
         "reboot": False, "status": "done", "output": "0000:06:00.0: nvme -> vfio-pci"},
        {"requirement": "cmdline-persistent", "subject": "dl360-gen9-01", "summary": "add intel_iommu=on iommu=pt",
         "kind": "change", "args": [], "commands": ["update-grub"], "repairs": ["cmdline-persistent"],
         "files": [{"path": "/etc/default/grub", "diff": ["@@ -9 +9 @@", '-GRUB_CMDLINE_LINUX_DEFAULT="quiet splash"',
                                                          '+GRUB_CMDLINE_LINUX_DEFAULT="intel_iommu=on iommu=pt"']}],
         "reboot": True, "status": "done", "output": ""},
        {"requirement": "firmware-iommu", "subject": "dl360-gen9-01", "summary": "enable VT-d in the BIOS",
         "kind": "manual", "args": [], "commands": [], "files": [], "repairs": [], "reboot": True,
         "status": "planned", "output": ""}],
    "before": {"bound-to-vfio[ceph-nvme-1]": "0000:06:00.0 is bound to nvme",
               "cmdline-persistent[dl360-gen9-01]": "next boot: intel_iommu=on is missing"},
    "after": {"cmdline-persistent[dl360-gen9-01]": "next boot: intel_iommu=on is missing"},
}


def test_fix_runs_show_plan_steps_reboot_and_before_after(tmp_path, failing_report):
    doc = failing_report.doc
    doc["fix_runs"] = [FIX_RUN, dict(FIX_RUN, outcome="dry-run", reboot_required=False, after=None)]
    page = tmp_path / "fix.html"
    page.write_text(f"<!DOCTYPE html><html><body>{html.render(doc)}</body></html>")
    texts = Texts(page.read_text())
    runs = squash(texts.text["fix-runs"])
    assert "dl360-gen9-01: applied" in runs and "REBOOT REQUIRED" in runs
    assert "1 bound-to-vfio ceph-nvme-1 bind 0000:06:00.0 to vfio-pci driverctl set-override 0000:06:00.0 vfio-pci " \
           "fixes/bound-to-vfio.sh no done 0000:06:00.0: nvme -> vfio-pci" in runs
    assert '+GRUB_CMDLINE_LINUX_DEFAULT="intel_iommu=on iommu=pt"' in runs and "3 firmware-iommu" in runs
    assert "bound-to-vfio[ceph-nvme-1] 0000:06:00.0 is bound to nvme passes" in runs
    assert "cmdline-persistent[dl360-gen9-01] next boot: intel_iommu=on is missing still failing" in runs
    assert "dl360-gen9-01: dry-run" in runs and "not re-audited" in runs


def test_a_read_only_audit_says_so(failing_report):
    assert "No remediation was run: this report is a read-only audit." in failing_report.text


def test_a_real_dry_run_plan_is_in_the_report(tmp_path, broken_host):
    """--fix --dry-run (iommu_audit/fix) on the broken copy: its plan lands in the report, nothing re-audited."""
    from tests.unit.report.conftest import audit, BUNDLED
    r = audit(tmp_path, broken_host.root, BUNDLED, "--fix", "--dry-run")
    [run] = r.doc["fix_runs"]
    assert run["outcome"] == "dry-run" and run["after"] is None
    runs = squash(Texts(r.text).text["fix-runs"])
    assert "dl360-gen9-01: dry-run" in runs and "the plan needs a reboot" in runs
    assert "fixes/cmdline-persistent.sh yes planned" in runs and "fixes/bound-to-vfio.sh no planned" in runs
    assert "bound-to-vfio[ceph-nvme-1] 0000:06:00.0 is bound to nvme not re-audited" in runs
