"""The README as a newcomer runs it: in a fresh clone, its set-up command, then every example.

An example is a line in a ```sh block of README.md whose first word is `pytest`,
`iommu-audit` or `mkdir`. Each runs as written in the clone's activated .venv
(`. .venv/bin/activate && LINE`), in README order (a --save-facts line feeds the --facts
line after it). Hosts named nodeN (`ssh://root@node1`) are a QEMU guest reached through
its ssh config; nothing else is rewritten. An example fails the test when it cannot run:
an exit code other than 0 (ready) or 1 (not ready), a traceback, or a host not read.
Examples that need what the harness cannot give say why in SKIP.
"""

import os
import re
import subprocess
from pathlib import Path

import pytest

from tests.e2e.audit_run import PROJECT

FIRST_WORDS = ("pytest", "iommu-audit", "mkdir")
# Pattern in an example -> why it cannot run here. Keep it short: every skip is a README line nobody runs.
SKIP = {
    r"--sudo": "the QEMU guest has root only, no sudo user to log in as",
    r"--ansible-inventory=inventory\.yml": "needs your Ansible inventory",
    r"--profile-map=rack1\.yaml": "needs your profile map",
    r"--hosts\S* .*--fix(?! --dry-run)": "changes the host: tests/e2e/test_fix.py applies fixes on a guest of its own",
    r"--undo=": "names the run id an earlier --fix printed",
}
HOST = re.compile(r"\b(ssh|paramiko)://(?:(\w+)@)?node\d+\b")


def sh_blocks(text: str) -> list[str]:
    return re.findall(r"^```sh\n(.*?)^```", text, re.S | re.M)


def examples(text: str) -> list[str]:
    """Example lines of every ```sh block, comments dropped."""
    lines = [ln.split("  #")[0].strip() for block in sh_blocks(text) for ln in block.splitlines()]
    return [ln for ln in lines if ln.split(" ", 1)[0] in FIRST_WORDS]


def setup_command(text: str) -> str:
    """The README's first command: what a newcomer types first."""
    return sh_blocks(text)[0].splitlines()[0].split("  #")[0].strip()


README = (PROJECT / "README.md").read_text()
EXAMPLES = examples(README)


def test_readme_has_examples_and_a_setup_command():
    assert setup_command(README) == "bash scripts/audit.sh"
    assert any(ln.startswith("pytest --profile") for ln in EXAMPLES), EXAMPLES


@pytest.fixture(scope="module")
def clone(tmp_path_factory) -> Path:
    """A fresh clone of this checkout's HEAD, set up with the README's first command."""
    root = tmp_path_factory.mktemp("readme") / "iommu-audit"
    subprocess.run(["git", "clone", "-q", str(PROJECT), str(root)], check=True, timeout=120)
    setup = setup_command(README)
    proc = subprocess.run(["bash", "-c", setup], cwd=root, capture_output=True, text=True, timeout=900,
                          env=_env(), stdin=subprocess.DEVNULL)
    output = proc.stdout + proc.stderr
    assert proc.returncode in (0, 1), f"{setup}: exit code {proc.returncode}\n{output}"
    assert "Traceback" not in output, output
    last = proc.stdout.strip().splitlines()[-1]
    assert last.startswith("iommu-audit: verdict for this host"), output[-3000:]  # the last line is the verdict
    return root


@pytest.fixture(scope="module")
def guest(boot_guest):
    # The same topology as test_intel's guest: one boot serves both when they run together.
    return boot_guest("e2e-intel", iommu="intel", cmdline_extra="intel_iommu=on", nvme=4, mounted_nvme=3)


def _env() -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "VIRTUAL_ENV"))}
    env["COLUMNS"] = "200"
    return env


@pytest.mark.parametrize("line", EXAMPLES, ids=[f"{i:02d}" for i in range(len(EXAMPLES))])
def test_readme_example_runs_as_written(clone, request, line):
    reason = next((why for pattern, why in SKIP.items() if re.search(pattern, line)), None)
    if reason:
        pytest.skip(f"{line}: {reason}")
    command = line
    if HOST.search(line):
        g = request.getfixturevalue("guest")
        command = HOST.sub(lambda m: f"{m.group(1)}://{m.group(2) + '@' if m.group(2) else ''}{g.name}", line)
        command += f" --ssh-config={g.ssh_config_path}"
    proc = subprocess.run(["bash", "-c", f". .venv/bin/activate && {command}"], cwd=clone, capture_output=True,
                          text=True, timeout=600, env=_env(), stdin=subprocess.DEVNULL)
    output = proc.stdout + proc.stderr
    assert proc.returncode in (0, 1), f"{line}\n(ran: {command})\nexit code {proc.returncode}\n{output[-4000:]}"
    for sign in ("Traceback", "INTERNALERROR", "[facts-gathered]", "not read, so not ready"):
        assert sign not in output, f"{line}\n(ran: {command})\n{output[-4000:]}"
