"""Gather each host's facts in one round trip: run the probe once, keep its text.

Where facts come from (a Target):
  live     - a testinfra host (local://, ssh://, paramiko://, ansible://): one command
  sysroot  - an offline copy of a host's files, read by the same probe locally
  saved    - a JSON file written earlier by --save-facts
"""

import base64
import datetime
import gzip
import json
import os
import secrets
import shutil
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path

import testinfra

from iommu_audit import confine
from iommu_audit.facts import HostFacts, from_probe
from iommu_audit.parsers.sections import MARKER

PROBE_SOURCE = (Path(__file__).with_name("probe.sh")).read_text()
PROBE = "\n".join(line.strip() for line in PROBE_SOURCE.splitlines()
                  if line.strip() and not line.strip().startswith("#")) + "\n"
# dropbear (busybox hosts) refuses commands over 9000 bytes, so the probe travels gzipped and
# base64-encoded (a third of its size) and unpacks on the host with base64 and gzip, which every
# distribution and busybox have. Still one read-only command; the script is unpacked into a
# variable, not piped into sh, so no command in it can read the rest of the script from stdin.
DROPBEAR_MAX_COMMAND = 9000
_PACKED = base64.b64encode(gzip.compress(PROBE.encode(), compresslevel=9, mtime=0)).decode()
# Arguments: ROOT MARKER SECONDS. Where `timeout` exists, the host itself ends a probe that
# runs past SECONDS (GNU timeout kills the probe's whole process group, a hanging virsh included).
TIMED_OUT = "iommu-audit: the probe did not finish in time"
COMMAND = ("p=$(printf %s " + _PACKED + " | base64 -d | gzip -dc) && [ -n \"$p\" ] || "
           "{ echo 'iommu-audit: cannot unpack the probe: the host needs base64 and gzip' >&2; exit 127; }; "
           "t=; command -v timeout >/dev/null 2>&1 && t=\"timeout -s KILL $3\"; "
           "$t sh -c \"$p\" iommu-audit-probe \"$1\" \"$2\"; r=$?; "
           "[ $r = 137 ] && [ -n \"$t\" ] && echo '" + TIMED_OUT + "' >&2; exit $r")
DEFAULT_TIMEOUT = 120  # seconds per host; a healthy host answers in a few
_GRACE = 15  # the transport's own wait beyond the host's, for a session that hangs itself
FACTS_FORMAT = "iommu-audit-facts/1"


class GatherError(Exception):
    """Facts could not be gathered from a host; the message says what to do."""


@dataclass
class Target:
    name: str  # short host name used in test ids
    source: str  # where the facts come from, for humans: "ssh://node1", "sysroot:/srv/x"
    host: object = None  # testinfra Host; None: this machine
    sysroot: str = ""
    saved_output: str = ""
    saved_marker: str = MARKER
    inventory_vars: dict = field(default_factory=dict)  # an ansible:// host's inventory variables
    timeout: float = DEFAULT_TIMEOUT  # --probe-timeout


@dataclass
class Gathered:
    name: str
    source: str
    gathered_at: str
    probe_output: str
    marker: str = MARKER  # opens each section of probe_output


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def gather(target: Target) -> Gathered:
    if target.saved_output:
        if f"{target.saved_marker} end" not in target.saved_output:
            raise GatherError(f"{target.source}: the saved facts are cut short (no end marker); gather them again")
        return Gathered(target.name, target.source, "", target.saved_output, target.saved_marker)
    if _is_copy(target):
        view = _build_view(target)
        try:
            return _probe_copy(target, view)
        finally:
            shutil.rmtree(view, ignore_errors=True)
    return _run_probe(target, "/")


def _is_copy(target: Target) -> bool:
    return bool(target.sysroot and target.sysroot.rstrip("/"))


def _build_view(target: Target) -> str:
    """A new directory holding the confined view of the target's copy (the probe reads that, never
    past the copy's root); the caller removes it."""
    for base in _view_bases():
        view = None
        try:
            view = tempfile.mkdtemp(prefix="iommu-audit-view-", dir=base)
            confine.build(target.sysroot, view)
            return view
        except (confine.ConfineError, OSError) as exc:
            if view:
                shutil.rmtree(view, ignore_errors=True)
            if base and not isinstance(exc, confine.ConfineError):  # /dev/shm full or refused: try the default
                continue
            raise GatherError(f"{target.source}: cannot read the host copy: {exc}") from None
    raise AssertionError("unreachable: the last base, the default temporary directory, returns or raises")


def _probe_copy(target: Target, view: str) -> Gathered:
    g = _run_probe(target, view)
    g.probe_output = g.probe_output.replace(f"root={view}\n", f"root={target.sysroot}\n", 1)
    return g


def _view_bases() -> list[str | None]:
    """Where to build a confined view: thousands of small files written and removed at once take
    several times longer on a disk-backed /tmp than in memory (tmpfs /dev/shm); None: the default."""
    shm = "/dev/shm"
    return [shm, None] if os.path.isdir(shm) and os.access(shm, os.W_OK | os.X_OK) else [None]


def _run_probe(target: Target, root: str) -> Gathered:
    host = target.host or testinfra.get_host("local://")
    # A fresh marker per run: nothing the probe copies from the host can open a section.
    marker = f"::iommu-audit-{secrets.token_hex(8)}::"
    seconds = max(1, round(target.timeout))
    late = GatherError(f"{target.source}: the probe did not finish within {seconds} s (--probe-timeout): the host, "
                       "its SSH session or a tool on it hangs (virsh, a FIFO in place of a file); find it, or raise "
                       "--probe-timeout")
    try:
        # The one round trip: the packed probe travels as an argument of sh -c; testinfra quotes it.
        result = _within(seconds + _GRACE, late, host.run, "sh -c %s iommu-audit-probe %s %s %s", COMMAND, root, marker,
                         str(seconds))
    except GatherError:
        raise
    except Exception as exc:  # testinfra backends raise their own types (paramiko, ansible)
        raise GatherError(f"{target.source}: cannot run commands on the host: {_reason(exc)}. {_REACH_HINT}") from None
    # Decode leniently: HPE firmware puts non-UTF-8 bytes into ACPI table lines of dmesg.
    out = result.stdout_bytes.decode("utf-8", errors="replace")
    if f"{marker} end" not in out:
        detail = (result.stderr_bytes.decode("utf-8", errors="replace") or out).strip().splitlines()
        reason = detail[-1] if detail else f"exit code {result.rc}"
        if reason == TIMED_OUT:
            raise late
        raise GatherError(f"{target.source}: unreachable, or the probe was cut short ({reason}). {_REACH_HINT}")
    return Gathered(target.name, target.source, _now(), out, marker)


READ_AHEAD = 16  # hosts probed at once; also the host copies whose views are built ahead (each held until read)


class Pending:
    """gather(target), started now in a daemon thread; result() waits for it and returns or raises
    what gather did. Hosts answer at once (a serial fleet waits for its slowest host, not for the
    sum of all), and a probe's processes run while pytest collects."""

    _slots = threading.BoundedSemaphore(READ_AHEAD)  # probes (SSH sessions) under way at once

    def __init__(self, target: Target):
        self._box: dict = {}
        view = None
        if _is_copy(target):
            # Built here, in the caller's thread: in a thread of its own it would only take turns
            # with pytest's collection for the interpreter, and the probe would start no sooner.
            try:
                view = _build_view(target)
            except GatherError as exc:
                self._box["error"] = exc
        self._view = view
        self._thread = threading.Thread(target=self._run, args=(target, view), daemon=True,
                                        name=f"gather {target.name}")
        self._thread.start()

    def close(self) -> None:
        """The run is over and nothing took the result: wait for a copy's probe, which removes its
        view (it cannot hang: the view holds no FIFO); a live host's may go on, the process ends it."""
        if self._view:
            self._thread.join()

    def _run(self, target: Target, view: str | None) -> None:
        if "error" in self._box:
            return
        with self._slots:
            try:
                self._box["result"] = _probe_copy(target, view) if view else gather(target)
            except Exception as exc:  # handed to result()
                self._box["error"] = exc
            finally:
                if view:
                    shutil.rmtree(view, ignore_errors=True)

    def result(self) -> Gathered:
        self._thread.join()
        if "error" in self._box:
            raise self._box["error"]
        return self._box["result"]


def _within(seconds: float, late: GatherError, fn, *args):
    """fn(*args), or `late` once `seconds` have passed (the call goes on in a daemon thread:
    testinfra's backends cannot be interrupted)."""
    box = {}

    def call():
        try:
            box["result"] = fn(*args)
        except Exception as exc:  # handed to the caller
            box["error"] = exc

    thread = threading.Thread(target=call, daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        raise late
    if "error" in box:
        raise box["error"]
    return box["result"]


def parse(g: Gathered) -> HostFacts:
    """Typed facts of a gathered host; output the parsers cannot read is a GatherError, not a crash."""
    try:
        return from_probe(g.name, g.probe_output, g.marker)
    except Exception as exc:  # any parser slip on odd host data must not take the whole audit down
        raise GatherError(f"{g.source}: the probe's output could not be parsed ({type(exc).__name__}: {exc}); "
                          "please report it with the --save-facts file") from None


def _reason(exc: Exception) -> str:
    """The transport's own last words (ssh: 'Connection refused'), not a repr holding the whole probe."""
    result = exc.args[0] if exc.args else None
    if hasattr(result, "stderr_bytes"):
        lines = result.stderr_bytes.decode("utf-8", errors="replace").strip().splitlines()
        return lines[-1] if lines else f"exit code {result.rc}"
    return str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__


_REACH_HINT = ("Check the address, SSH access (--ssh-config, --ssh-identity-file, --sudo) and that the host is up.")


def save(path: str, gathered: list[Gathered]) -> None:
    doc = {"format": FACTS_FORMAT, "hosts": [g.__dict__ for g in gathered]}
    Path(path).write_text(json.dumps(doc, indent=1) + "\n")


def load(path: str) -> list[Target]:
    """Targets from a --save-facts file; raise GatherError with a clear reason if it is not one."""
    try:
        doc = json.loads(Path(path).read_text())
    except OSError as exc:
        raise GatherError(f"--facts {path}: cannot read it ({exc.strerror})") from None
    except ValueError as exc:
        raise GatherError(f"--facts {path}: not JSON ({exc})") from None
    if not isinstance(doc, dict) or doc.get("format") != FACTS_FORMAT or not isinstance(doc.get("hosts"), list):
        raise GatherError(f"--facts {path}: not an iommu-audit facts file (expected \"format\": \"{FACTS_FORMAT}\"); "
                          "write one with --save-facts")
    targets = []
    for i, h in enumerate(doc["hosts"]):
        if not isinstance(h, dict) or not all(isinstance(h.get(k), str) for k in ("name", "probe_output")):
            raise GatherError(f"--facts {path}: hosts[{i}] lacks \"name\" or \"probe_output\"")
        targets.append(Target(h["name"], f"facts:{path}#{h['name']}", saved_output=h["probe_output"],
                              saved_marker=str(h.get("marker") or MARKER)))
    return targets
