"""Run the audit exactly as a user does (`pytest --profile ... --hosts ssh://...`) and read the outcome."""

import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import yaml

PROJECT = Path(__file__).resolve().parents[2]
QEMU_NVME_ID = "1b36:0010"  # QEMU's emulated NVMe controller


@dataclass
class AuditRun:
    rc: int
    output: str
    outcomes: dict[str, str]  # "test_bound_to_vfio[host-dev]" -> passed | failed | skipped | xfailed
    messages: dict[str, str]

    def outcome(self, test_id: str) -> str:
        assert test_id in self.outcomes, f"{test_id} not run; ran: {sorted(self.outcomes)}\n{self.output}"
        return self.outcomes[test_id]

    def failed(self) -> set[str]:
        return {t for t, o in self.outcomes.items() if o == "failed"}


def write_profile(path: Path, *, cpu_vendor="intel", devices=(), disks=(), require=()) -> Path:
    doc = {"name": path.stem, "platform": {"cpu_vendor": cpu_vendor},
           "kernel": {"cmdline_require": list(require)}, "devices": list(devices), "disks": list(disks)}
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def audit(tmp_path: Path, profile: Path | None, *args: str, env: dict | None = None,
          answer: str | None = None) -> AuditRun:
    """profile None: no --profile (every host gets its own from --profile-map or the inventory).
    answer: run with a terminal (a pty) as stdin and type this at --fix's question."""
    junit = tmp_path / f"junit-{len(list(tmp_path.glob('junit-*.log')))}.xml"  # each run leaves a .log
    cmd = [sys.executable, "-m", "pytest", *([f"--profile={profile}"] if profile else []), f"--junitxml={junit}",
           "-q", "-rfE",
           "-p", "no:randomly", *args]
    if answer is None:
        proc = subprocess.run(cmd, cwd=PROJECT, capture_output=True, text=True, timeout=600,
                              env={**os.environ, **(env or {})}, stdin=subprocess.DEVNULL)
    else:
        proc = _answering(cmd, {**os.environ, **(env or {})}, answer)
    junit.with_suffix(".log").write_text(proc.stdout + proc.stderr)  # the whole output, for a failing test's reader
    outcomes, messages = {}, {}
    if junit.exists():
        for case in ET.parse(junit).getroot().iter("testcase"):
            name = case.get("name")
            if case.find("failure") is not None or case.find("error") is not None:
                el = case.find("failure") if case.find("failure") is not None else case.find("error")
                outcomes[name], messages[name] = "failed", (el.get("message") or "") + "\n" + (el.text or "")
            elif case.find("skipped") is not None:
                el = case.find("skipped")
                outcomes[name] = "xfailed" if el.get("type") == "pytest.xfail" else "skipped"
                messages[name] = el.get("message") or ""
            else:
                outcomes[name] = "passed"
    return AuditRun(proc.returncode, proc.stdout + proc.stderr, outcomes, messages)


def _answering(cmd: list[str], env: dict, answer: str) -> subprocess.CompletedProcess:
    """Run cmd with a pty as its terminal; type `answer` once the question is on screen."""
    import pty
    import select
    import time
    master, slave = pty.openpty()
    proc = subprocess.Popen(cmd, cwd=PROJECT, env=env, stdin=slave, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    os.close(slave)
    out, asked, deadline = b"", False, time.monotonic() + 600
    while time.monotonic() < deadline:
        ready, _, _ = select.select([proc.stdout], [], [], 1)
        chunk = os.read(proc.stdout.fileno(), 65536) if ready else b""
        if ready and not chunk:
            break
        out += chunk
        if not asked and b"Type 'yes' to go on:" in out:
            os.write(master, answer.encode() + b"\n")
            asked = True
    else:
        proc.kill()
    proc.wait()
    os.close(master)
    return subprocess.CompletedProcess(cmd, proc.returncode, out.decode(errors="replace"), "")


def ssh_args(*guests) -> list[str]:
    """--hosts and one --ssh-config for these guests (their configs concatenated)."""
    config = guests[0].workdir / "fleet_ssh_config" if len(guests) > 1 else guests[0].ssh_config_path
    if len(guests) > 1:
        config.write_text("".join(g.ssh_config_path.read_text() for g in guests))
    return [f"--hosts={','.join('ssh://' + g.name for g in guests)}", f"--ssh-config={config}"]


# The rule fixes/vfio-binding-persistent.sh writes on hosts without driverctl: it is what applies
# /etc/driverctl.d at boot (an override file alone binds nothing, and the audit says so).
VFIO_RULE = ('ACTION=="add", SUBSYSTEM=="pci", TEST=="/etc/driverctl.d/pci-$kernel", '
             'PROGRAM="/bin/cat /etc/driverctl.d/pci-$kernel", RESULT=="vfio-pci", ATTR{driver_override}="vfio-pci"\n')


def put_vfio_override(guest, addr: str) -> None:
    """Keep addr on vfio-pci across boots as an admin without driverctl does: override file + udev rule."""
    put_file(guest, f"/etc/driverctl.d/pci-{addr}", "vfio-pci\n")
    put_file(guest, "/etc/udev/rules.d/89-iommu-audit-vfio.rules", VFIO_RULE)


def put_file(guest, path: str, text: str) -> None:
    import shlex
    guest.run(f"mkdir -p {shlex.quote(str(Path(path).parent))} && printf '%s' {shlex.quote(text)} > {shlex.quote(path)}",
              check=True)
