"""The report's data: one JSON-able document built from a run's results (format REPORT_FORMAT).

The part that was judged ("judged": the profile text, each host's probe output, every result)
is hashed into "sha256". It holds nothing specific to the run (no time, user or file path),
so re-auditing the embedded facts with --facts gives the same hash. Everything else (the run,
host facts, matrix, verdicts, waivers, fix runs) is derived for readers and pipelines.
"""

import datetime
import getpass
import hashlib
import json
import socket
from importlib import metadata
from pathlib import Path

import pytest

from iommu_audit import gather
from iommu_audit.requirements import CATALOG

REPORT_FORMAT = "iommu-audit-report/1"
READY, READY_WITH_WAIVERS, NOT_READY = "READY", "READY WITH WAIVERS", "NOT READY"
# Result statuses, in the order the counts are shown.
STATUSES = ("passed", "failed", "error", "not-checked", "waived", "advisory", "not-applicable")
BLOCKING = ("failed", "error", "not-checked")
SUBJECT_KINDS = ("device", "host_device", "disk")
HOST_COLUMN = "host"


def title(profile_name: str) -> str:
    return f"Go-live IOMMU/VFIO compliance: {profile_name}"


class Collector:
    """Every collected check and its final status, fed by pytest hooks.

    Under pytest-xdist the controller collects nothing: its records are made from the reports,
    which carry the host, subject and scope that collected() put into user_properties.
    """

    def __init__(self):
        self.items: dict[str, dict] = {}  # nodeid -> result record, in collection order

    def collected(self, item: pytest.Item) -> None:
        marker = item.get_closest_marker("requirement")
        params = getattr(item, "callspec", None)
        params = params.params if params else {}
        if marker is None or "target" not in params:
            return
        kind = next((k for k in SUBJECT_KINDS if k in params), None)
        subject = params[kind].name if kind else None
        item.user_properties += [("host", params["target"].name), ("subject", subject or HOST_COLUMN),
                                 ("scope", kind or HOST_COLUMN)]  # also shown in --junitxml
        self._record(item.nodeid, params["target"].name, marker.args[0], subject, kind or HOST_COLUMN)

    def _record(self, nodeid: str, host: str, requirement: str, subject: str | None, kind: str) -> dict:
        return self.items.setdefault(nodeid, {
            "id": nodeid, "host": host, "requirement": requirement, "subject": subject, "kind": kind,
            "status": "not-checked", "reason": "not run (deselected or interrupted)",
            "severity": "", "found": "", "expected": "", "fix": "", "evidence": [], "waiver": None})

    def logreport(self, report: pytest.TestReport) -> None:
        props = dict(report.user_properties)
        r = self.items.get(report.nodeid)
        if r is None:
            if "host" not in props:
                return
            # A check skipped before Judge ran has no "requirement" property: checks are named after it.
            requirement = props.get("requirement") or \
                report.nodeid.split("::")[-1].split("[")[0].removeprefix("test_").replace("_", "-")
            subject = None if props["scope"] == HOST_COLUMN else props["subject"]
            r = self._record(report.nodeid, props["host"], requirement, subject, props["scope"])
        for key in ("severity", "found", "expected", "fix"):
            r[key] = str(props.get(key, r[key]))
        r["evidence"] = [str(e) for e in props.get("evidence", r["evidence"])]
        reason = getattr(report, "wasxfail", "")
        if report.when == "setup":
            if report.failed:
                r.update(status="error", reason=_first_line(report.longreprtext))
            elif report.skipped:
                r.update(status="not-checked", reason=_skip_reason(report))
            else:
                r.update(status="not-checked", reason="the check did not finish")
        elif report.when == "call":
            if report.passed:
                r.update(status="passed", reason="")
            elif report.failed:
                # A Judge failure records its finding; anything else is a crash of the check.
                r.update(status="failed" if "found" in props else "error",
                         reason="" if "found" in props else _first_line(report.longreprtext))
            elif reason.startswith("WAIVED"):
                r.update(status="waived", reason=reason)
            elif reason:
                r.update(status="advisory", reason=reason)
            else:
                r.update(status="not-applicable", reason=_skip_reason(report))
        elif report.when == "teardown" and report.failed:
            r.update(status="error", reason=_first_line(report.longreprtext))


def _first_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1].strip() if lines else ""


def _skip_reason(report: pytest.TestReport) -> str:
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        return str(longrepr[2]).removeprefix("Skipped: ")
    return _first_line(str(longrepr))


def content_hash(judged: dict) -> str:
    canonical = json.dumps(judged, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def build(state, collector: Collector, config: pytest.Config, now: datetime.datetime | None = None) -> dict:
    from iommu_audit.plugin import waiver_for

    now = now or datetime.datetime.now().astimezone()
    targets = {t.name: t for t in state.targets}
    profile_of = {t.name: state.profile_for(t) for t in state.targets}
    host_order = {name: i for i, name in enumerate(targets)}
    req_order = {rid: i for i, rid in enumerate(CATALOG)}

    place = {host: {s.name: i for i, s in enumerate([*p.devices, *p.disks])} for host, p in profile_of.items()}

    def subject_order(r: dict) -> int:
        names = place.get(r["host"], {})
        return -1 if r["subject"] is None else names.get(r["subject"], len(names))

    results = sorted(collector.items.values(), key=lambda r: (
        host_order.get(r["host"], len(host_order)), req_order.get(r["requirement"], len(req_order)),
        subject_order(r), r["id"]))
    for r in results:
        p = profile_of.get(r["host"], state.profile)
        r["severity"] = r["severity"] or p.severity_of(r["requirement"])
        if r["status"] in ("waived", "failed"):  # failed: an expired waiver is shown with it
            w = waiver_for(p, r["requirement"], r["subject"], r["host"])
            r["waiver"] = _waiver(w) if w else None
    judged = {
        "profile": _text(state.profile.path),
        "facts": [{"name": g.name, "marker": g.marker, "probe_output": g.probe_output}
                  for name in targets if (g := state.gathered.get(name))],
        "results": results,
    }
    host_texts = {name: _text(p.path) for name, p in profile_of.items()}
    if any(text != judged["profile"] for text in host_texts.values()):  # a profile per host (--profile-map)
        judged["host_profiles"] = host_texts
    profiles_used = list({id(p): p for p in [state.profile, *profile_of.values()]}.values())
    today = now.date()
    return {
        "format": REPORT_FORMAT,
        "sha256": content_hash(judged),
        "run": {
            "title": title(state.profile.name),
            "profile": state.profile.name,
            "profile_path": str(state.profile.path),
            "profile_sha256": hashlib.sha256(judged["profile"].encode("utf-8")).hexdigest(),
            "host_profiles": {name: p.name for name, p in profile_of.items()},
            "version": _version(),
            "user": getpass.getuser(),
            "machine": socket.gethostname(),
            "time": now.isoformat(timespec="seconds"),
            "mode": ", ".join(dict.fromkeys(_mode(t) for t in state.targets)),
        },
        "requirements": {rid: {"title": req.title, "rationale": req.rationale, "scope": req.scope,
                               "severity": state.profile.severity_of(rid)}
                         for rid, req in CATALOG.items() if any(r["requirement"] == rid for r in results)},
        "hosts": [_host(t, state, results, profile_of[t.name]) for t in state.targets],
        "waivers": [dict(_waiver(w), profile=p.name, days_left=(w.expires - today).days, expired=w.expires < today,
                         applies_to=[r["id"] for r in results if r["waiver"] == _waiver(w)])
                    for p in profiles_used for w in p.waivers],
        "fix_scripts": {rid: script for rid in CATALOG if (script := _fix_script(config.rootpath / "fixes", rid))},
        "fix_runs": [_jsonable(run) for run in getattr(state, "fix_runs", None) or []],
        "judged": judged,
    }


def _text(path) -> str:
    return Path(path).read_bytes().decode("utf-8", errors="replace")


def _jsonable(value):
    """A fix run as plain JSON values (it is the fix helper's dict; keep it as recorded)."""
    return json.loads(json.dumps(value, default=str))


def _fix_script(fixes: Path, requirement: str) -> str:
    """The fixes/ remediation for a requirement, relative to the project, when there is one."""
    for candidate in sorted(fixes.glob(f"{requirement}.*")):
        if candidate.suffix in (".sh", ".py"):
            return f"fixes/{candidate.name}"
    return ""


def _waiver(w) -> dict:
    return {"requirement": w.requirement, "subject": w.device, "host": w.host, "reason": w.reason,
            "approved_by": w.approved_by, "expires": w.expires.isoformat()}


def _mode(target) -> str:
    if target.saved_output:
        return "saved facts"
    if target.sysroot:
        return "sysroot copy"
    host = target.host
    if host is None or host.backend.get_connection_type() == "local":
        return "local"
    return {"ssh": "SSH", "paramiko": "SSH", "ansible": "Ansible"}.get(host.backend.get_connection_type(),
                                                                     host.backend.get_connection_type())


def _version() -> str:
    try:
        return metadata.version("iommu-audit")
    except metadata.PackageNotFoundError:
        return "unknown"


def _host(target, state, results: list[dict], profile) -> dict:
    mine = [r for r in results if r["host"] == target.name]
    counts = {s: sum(r["status"] == s for r in mine) for s in STATUSES}
    if not mine or any(r["status"] in BLOCKING for r in mine):  # nothing checked is never ready
        verdict = NOT_READY
    elif counts["waived"]:
        verdict = READY_WITH_WAIVERS
    else:
        verdict = READY
    g = state.gathered.get(target.name)
    facts = state.facts.get(target.name)
    if facts is None and g is not None:  # under pytest-xdist the controller gets the probe output only
        try:
            facts = gather.parse(g)
        except gather.GatherError:
            facts = None
    return {"name": target.name, "source": target.source, "gathered_at": g.gathered_at if g else "",
            "verdict": verdict, "counts": counts, "error": state.errors.get(target.name, ""),
            "facts": _facts(facts),
            "profile": profile.name, "columns": _columns(mine, [s.name for s in [*profile.devices, *profile.disks]])}


def _facts(f) -> dict:
    """What the report shows about a host; all of it comes from the hashed probe output."""
    if f is None:
        return {}
    system = getattr(f, "system", {}) or {}
    return {"hostname": f.hostname, "system_vendor": system.get("sys_vendor", ""),
            "product": system.get("product_name", ""), "serial": system.get("product_serial", ""),
            "bios_version": system.get("bios_version", ""), "bios_date": system.get("bios_date", ""),
            "cpu_vendor": f.cpu_vendor, "cpu_model": system.get("cpu_model", ""), "kernel": f.kernel,
            "cmdline": f.cmdline, "distro": system.get("os", "")}


def _columns(results: list[dict], subjects: list[str]) -> list[dict]:
    """The matrix's columns for one host: the host itself, then devices and disks in profile order."""
    kinds = {r["subject"]: r["kind"] for r in results}
    ordered = ([None] if None in kinds else []) + [s for s in subjects if s in kinds]
    return [{"name": s or HOST_COLUMN, "subject": s, "kind": kinds[s]} for s in ordered]


def counts_text(counts: dict) -> str:
    return ", ".join(f"{n} {s.replace('-', ' ')}" for s, n in counts.items() if n)


def anchor(result: dict) -> str:
    """The finding's id in the HTML: f-<host>-<requirement>[-<subject>]."""
    parts = [result["host"], result["requirement"]] + ([result["subject"]] if result["subject"] else [])
    return "f-" + "-".join("".join(c if c.isalnum() or c in "._" else "_" for c in p) for p in parts)


def write_json(doc: dict, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=1, ensure_ascii=False) + "\n")
