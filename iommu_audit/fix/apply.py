"""Carry out a host's plan through its testinfra host: one fixes/<requirement>.sh per step.

Each step runs in its own directory on the host, /var/log/iommu-audit/<run-id>/<NN>-<requirement>/
(record of what it changed, backups, log, status). A failing step rolls back that step and
every earlier step of the run, last first; `undo_run` reverts a finished run the same way.
"""

import base64
import datetime
import gzip
import json
import os
import re
import secrets
import socket
from dataclasses import dataclass
from pathlib import Path

from iommu_audit.fix.plan import CHANGE, HostPlan, Step

FIXES = Path(__file__).resolve().parents[2] / "fixes"
LOG_ROOT = "/var/log/iommu-audit"
RUN_ID = re.compile(r"^\d{8}T\d{6}Z-[0-9a-f]{4}$")


class FixError(Exception):
    """The run could not start or be undone; the message says why."""


def new_run_id() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ") + "-" + secrets.token_hex(2)


def lib_text() -> str:
    """fixes/lib.sh without its comment lines (the command must stay far below dropbear's 9000 bytes)."""
    return re.sub(r"(?m)^[ \t]*#.*\n", "", (FIXES / "lib.sh").read_text())


def script_text(requirement: str) -> str:
    """lib.sh + the script, as one sh program (what an admin runs by hand, with lib.sh beside it)."""
    return lib_text() + "\n" + (FIXES / f"{requirement}.sh").read_text()


def command(requirement: str) -> str:
    """One sh -c command, packed like the probe (gzip + base64) to stay far below dropbear's limit."""
    return _packed(script_text(requirement))


def _packed(program: str) -> str:
    packed = base64.b64encode(gzip.compress(program.encode(), mtime=0)).decode()
    return ("p=$(printf %s " + packed + " | base64 -d | gzip -dc) && [ -n \"$p\" ] || "
            "{ echo 'iommu-audit: cannot unpack the fix: the host needs base64 and gzip' >&2; exit 127; }; "
            "exec sh -c \"$p\" \"$0\" \"$@\"")


@dataclass
class Host:
    """The testinfra host a target is reached through (local://, ssh://, ...)."""
    host: object

    def run(self, requirement: str, *args: str):
        # testinfra quotes every argument; the sh -c program receives them as "$@".
        template = "sh -c %s " + " ".join(["%s"] * (len(args) + 1))
        return self.host.run(template, command(requirement), f"fixes/{requirement}.sh", *args)

    def sh(self, script: str, *args: str):
        return self.host.run("sh -c %s iommu-audit " + " ".join(["%s"] * len(args)), script, *args)

    def lib(self, function: str, *args: str):
        """Call one fixes/lib.sh function on the host (packed: lib.sh alone is several KB)."""
        program = lib_text() + f'\n{function} "$@"\n'
        return self.host.run("sh -c %s " + " ".join(["%s"] * (len(args) + 1)), _packed(program), "iommu-audit", *args)


def _output(result) -> str:
    return (result.stdout + result.stderr).strip()


def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return "unknown"


def _alive(pid: str) -> bool:
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, ValueError):
        return True
    return True


def lock(host: Host, run_id: str) -> list[str]:
    """Take the host's run lock (fixes/lib.sh lock_take) or raise FixError naming the holder; returns notes.

    The host judges a holder from an earlier boot, or a dead process of its own boot; a holder that
    is a dead process of this controller is judged here and named, so the host takes it over."""
    me = (_boot_id(), str(os.getpid()), socket.gethostname() or "?")
    r = host.lib("lock_take", run_id, *me)
    if r.rc == 3:
        held = re.search(r"\(holder: (.*)\)\s*$", r.stderr.strip())
        fields = held.group(1).split() if held else []
        if len(fields) >= 6 and fields[3] == me[0] and not _alive(fields[4]):
            r = host.lib("lock_take", run_id, *me, held.group(1))
    if r.rc != 0:
        line = _output(r).splitlines()[-1] if _output(r) else f"exit {r.rc}"
        raise FixError(re.sub(r"^iommu-audit: (FAILED: )?(refused: )?| \(holder: .*\)$", "", line))
    return [ln for ln in r.stdout.splitlines() if "note:" in ln]  # a stale lock taken over


def unlock(host: Host, run_id: str) -> None:
    host.lib("lock_release", run_id)


def apply_plan(host: Host, plan: HostPlan, run_id: str, echo, verify=None) -> str:
    """Run the plan's change steps in order; on failure roll the run back. Returns the outcome.
    verify(step), after a step whose script succeeded: what is still wrong ("" if nothing), for what
    only the audit can judge (which grub.cfg entry boots); a problem fails the step like its script would."""
    run_dir = f"{LOG_ROOT}/{run_id}"
    doc = json.dumps({"run_id": run_id, "host": plan.host, "steps": [s.record() for s in plan.steps]}, indent=1)
    # gzip + base64, in pieces: a command over dropbear must stay below 9000 bytes, and a plan of many steps is not.
    packed = base64.b64encode(gzip.compress(doc.encode(), mtime=0)).decode()
    pieces = [packed[i:i + 6000] for i in range(0, len(packed), 6000)]
    for n, piece in enumerate(pieces):
        last = n == len(pieces) - 1
        try:
            r = host.sh(('mkdir -p "$1" && chmod 700 "$1" && : > "$1/plan.b64" && ' if n == 0 else "") +
                        'printf %s "$2" >> "$1/plan.b64"' +
                        (' && base64 -d < "$1/plan.b64" | gzip -dc > "$1/plan.json" && rm -f "$1/plan.b64"' if last else ""),
                        run_dir, piece)
        except RuntimeError as exc:  # testinfra: the connection failed
            raise FixError(f"{plan.host}: cannot reach the host: {exc}") from exc
        if r.rc != 0:
            raise FixError(f"{plan.host}: cannot create {run_dir}/plan.json: {_output(r) or r.rc}")
    done: list[tuple[Step, str]] = []
    changes = plan.changes
    for n, step in enumerate(changes, 1):
        step_dir = f"{run_dir}/{n:02d}-{step.requirement}"
        echo(f"[{plan.host}] {n}/{len(changes)} {step.requirement} {step.subject}: {step.summary}")
        result = host.run(step.requirement, "--step-dir", step_dir, *step.args)
        step.output = _output(result)
        for line in step.output.splitlines():
            echo(f"    {line}")
        done.append((step, step_dir))
        rc = result.rc
        problem = verify(step) if rc == 0 and verify else ""
        if problem:
            line = f"FAILED: verify (the audit's own rule, on the host read again): {problem}"
            step.output += "\n" + line
            echo(f"    {line}")
            host.sh('printf "%s\\n" "$2" >> "$1/log"; echo failed > "$1/status"', step_dir, line)
            rc = 1
        if rc != 0:
            step.status = "failed"
            echo(f"[{plan.host}] step {n} failed (exit {rc}): rolling back this run's steps on {plan.host}")
            _roll_back(host, plan.host, done, echo)
            return "rolled-back"
        step.status = "done"
    return "applied"


def undo_order(items: list, requirement) -> list:
    """Last step first, except the initramfs rebuild: it is redone after the other steps put the
    files back, so the image holds the restored modprobe.d/modules-load.d."""
    return sorted(reversed(items), key=lambda item: requirement(item) == "initramfs")


def _roll_back(host: Host, name: str, done: list[tuple[Step, str]], echo) -> None:
    for step, step_dir in undo_order(done, lambda item: item[0].requirement):
        result = host.run(step.requirement, "--undo", "--step-dir", step_dir)
        ok = result.rc == 0
        step.status = "rolled-back" if ok else step.status + ", rollback failed"
        step.output += "\n" + _output(result)
        echo(f"[{name}] undo {step.requirement} {step.subject}: " + ("ok" if ok else f"FAILED: {_output(result)}"))


def undo_run(host: Host, name: str, run_id: str, echo) -> list[dict]:
    """Revert a run's steps on this host, last first. Steps already undone are skipped."""
    if not RUN_ID.match(run_id):
        raise FixError(f"--undo {run_id!r}: not a run id (e.g. 20261201T021900Z-1a2b, printed by --fix)")
    run_dir = f"{LOG_ROOT}/{run_id}"
    listing = host.sh('cd "$1" 2>/dev/null || exit 3; for d in [0-9]*-*/; do d=${d%/}; '
                      'printf "%s %s\\n" "$d" "$(cat "$d/status" 2>/dev/null)"; done', run_dir)
    if listing.rc == 3:
        raise FixError(f"{name}: no run {run_id} in {LOG_ROOT} on this host")
    steps = []
    lines = [ln for ln in listing.stdout.split("\n") if ln.strip() and not ln.split()[0].startswith("[0-9]")]
    for line in undo_order(lines, lambda ln: ln.split()[0].split("-", 1)[1]):
        step_dir, _, status = line.partition(" ")
        requirement = step_dir.split("-", 1)[1]
        entry = {"step": step_dir, "requirement": requirement, "status_before": status}
        if status in ("undone", "rolled-back"):
            entry["status"] = "already undone"
        else:
            r = host.run(requirement, "--undo", "--step-dir", f"{run_dir}/{step_dir}")
            entry["status"], entry["output"] = ("undone" if r.rc == 0 else "undo failed"), _output(r)
            echo(f"[{name}] undo {step_dir}: {entry['status']}")
            for out in entry["output"].splitlines():
                echo(f"    {out}")
        steps.append(entry)
    return steps
