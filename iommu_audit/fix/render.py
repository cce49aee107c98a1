"""The plan as people and change tickets read it."""

import json

from iommu_audit.fix.plan import CHANGE, MANUAL, REFUSED, WAITING, HostPlan

LABEL = {CHANGE: "change", MANUAL: "MANUAL", REFUSED: "REFUSED", WAITING: "WAITS FOR REBOOT"}


def text(plans: list[HostPlan]) -> list[str]:
    lines = []
    for plan in plans:
        changes = plan.changes
        head = f"host {plan.host}: {len(changes)} change(s)"
        others = [s for s in plan.steps if s.kind != CHANGE]
        if others:
            head += f", {len(others)} step(s) --fix will not take (manual, refused or waiting)"
        if plan.reboot_required:
            head += "; REBOOT REQUIRED afterwards"
        lines.append(head if plan.steps else f"host {plan.host}: nothing to do")
        n = 0
        for s in plan.steps:
            if s.kind == CHANGE:
                n += 1
                tag = f"{n:2d}."
            else:
                tag = " --"
            lines.append(f"  {tag} [{LABEL[s.kind]}] {s.requirement} ({s.subject}): {s.summary}")
            if s.kind == CHANGE:
                lines.append(f"       runs {s.script}" + (" (takes effect at the next boot)" if s.reboot else ""))
                lines += [f"       $ {c}" for c in s.commands]
                for fc in s.files:
                    lines.append(f"       file {fc.path}:")
                    lines += [f"         {d}" for d in fc.diff()]
    return lines


def as_json(plans: list[HostPlan], run_id: str, profile: str) -> str:
    return json.dumps({"format": "iommu-audit-fix-plan/1", "run_id": run_id, "profile": profile,
                       "hosts": [{"host": p.host, "reboot_required": p.reboot_required, "failing": p.failing,
                                  "steps": [s.record() for s in p.steps]} for p in plans]}, indent=1) + "\n"
