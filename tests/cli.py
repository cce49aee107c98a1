"""Run the audit as a user does (`python -m pytest --profile ...` in a subprocess) and read what it printed.

Shared by the plugin's unit tests and the hostile-input suite: each asserts on the exit
code and on what a person reads, never on internals.
"""

import os
import re
import subprocess
import sys
from pathlib import Path

from tests.conftest import PROJECT

BUNDLED = (PROJECT / "profiles" / "dl360-gen9.yaml").read_text()
NVME1 = "0000:06:00.0"  # ceph-nvme-1 of the profile, on vfio-pci in the sample
UNBOUND_ID = "test_bound_to_vfio[dl360-gen9-01-ceph-nvme-1]"
ALL_CHECKS = 43  # checks the dl360-gen9 profile gives one host


def run(*args: str, timeout: float = 120, cwd: Path = PROJECT) -> subprocess.CompletedProcess:
    """`python -m pytest *args` (from the project root unless cwd); .output is stdout and stderr together."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}  # no outer addopts/plugins
    env["COLUMNS"] = "200"
    proc = subprocess.run([sys.executable, "-m", "pytest", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)
    proc.output = proc.stdout + proc.stderr
    return proc


def counts(output: str) -> dict[str, int]:
    """The final summary line as numbers: {'passed': 34, 'failed': 1}."""
    line = [ln for ln in output.splitlines() if re.search(r"\bin [\d.]+s\b", ln)][-1]
    found = re.findall(r"(\d+) (passed|failed|skipped|errors?|waived|advisory|xfailed|xpassed|deselected)", line)
    return {("error" if kind.startswith("error") else kind): int(n) for n, kind in found}


def failed_ids(output: str) -> list[str]:
    return sorted(re.findall(r"^FAILED (\S+)", output, re.M))


def assert_clean(proc: subprocess.CompletedProcess) -> None:
    """No Python traceback, no pytest internal error."""
    assert "Traceback" not in proc.output, proc.output
    assert "INTERNALERROR" not in proc.output, proc.output


def assert_usage_error(proc: subprocess.CompletedProcess, *fragments: str, after_collection: bool = False) -> str:
    """Exit 4 with exactly one 'ERROR: ...' line holding every fragment; returns that line.

    Found while collecting (after_collection), pytest has already printed its session header.
    """
    assert proc.returncode == 4, proc.output
    assert_clean(proc)
    if after_collection:
        assert not re.search(r"\d+ (passed|failed)", proc.stdout), proc.stdout  # nothing ran
    else:
        assert proc.stdout == "", proc.stdout
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("ERROR: "), proc.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def profile_with(tmp_path: Path, old: str, new: str, name: str = "site.yaml") -> Path:
    assert old in BUNDLED
    path = tmp_path / name
    path.write_text(BUNDLED.replace(old, new, 1))
    return path
