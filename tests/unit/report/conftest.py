"""Reports of real audit runs, shared by the report tests (each run takes about a second)."""

import json
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import PROJECT
from tests.sysroot import HostCopy
from tests.unit.test_plugin import assert_clean, run

BUNDLED = (PROJECT / "profiles" / "dl360-gen9.yaml").read_text()
# ceph-nvme-1 waived until 2099; the boot configuration waived until 2020 (expired, so it still fails).
WAIVERS = """waivers:
  - requirement: bound-to-vfio
    device: ceph-nvme-1
    reason: RMA case 5501, replacement card on order
    expires: 2099-01-31
    approved_by: j.doe (CHG-1042)
  - requirement: cmdline-persistent
    reason: grub rework scheduled
    expires: 2020-01-31
    approved_by: a.smith
"""


INJECTION = '</script><img id="injected" src="x"> & </div>'


@dataclass
class Report:
    proc: object
    html: Path
    json: Path
    junit: Path
    profile: Path

    @property
    def text(self) -> str:
        return self.html.read_text()

    @property
    def doc(self) -> dict:
        return json.loads(self.json.read_text())


def audit(out: Path, sysroot: Path, profile_text: str = BUNDLED, *extra: str) -> Report:
    out.mkdir(parents=True, exist_ok=True)
    profile = out / "site.yaml"
    profile.write_text(profile_text)
    r = Report(None, out / "report.html", out / "report.json", out / "junit.xml", profile)
    r.proc = run(f"--profile={profile}", f"--sysroot={sysroot}", f"--html={r.html}", "--self-contained-html",
                 f"--json={r.json}", f"--junitxml={r.junit}", *extra)
    assert_clean(r.proc)
    return r


@pytest.fixture(scope="package")
def broken_host(tmp_path_factory) -> HostCopy:
    """The sample host with ceph-nvme-1 back on nvme and the boot configuration reset to the distribution's."""
    host = HostCopy(tmp_path_factory.mktemp("broken") / "dl360-gen9-01").bind("0000:06:00.0", "nvme")
    host.replace("etc/default/grub", 'GRUB_CMDLINE_LINUX_DEFAULT="intel_iommu=on iommu=pt"',
                 'GRUB_CMDLINE_LINUX_DEFAULT="quiet splash"')
    # Host text that would end the report's data script and inject markup if it were not escaped.
    return host.append("etc/default/grub", f"# {INJECTION}\n")


@pytest.fixture(scope="package")
def failing_report(tmp_path_factory, broken_host) -> Report:
    return audit(tmp_path_factory.mktemp("failing"), broken_host.root, BUNDLED.replace("waivers: []", WAIVERS))


@pytest.fixture(scope="package")
def sample_report(tmp_path_factory) -> Report:
    return audit(tmp_path_factory.mktemp("sample"), PROJECT / "samples" / "dl360-gen9-01")
