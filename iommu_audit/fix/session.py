"""--fix inside the pytest session: plan from the gathered facts, show it, apply it, re-gather.

The checks that follow judge the host as it is after the fix: the re-audit is the audit.
Each host's run is recorded in AuditState.fix_runs (see NOTES.md) for the report.
"""

import contextlib
import sys
from pathlib import Path

import pytest

from iommu_audit.fix import apply, render
from iommu_audit.fix.plan import CHANGE, PlanError, boot_unmet, plan_host


# Outcomes of a --fix/--undo run that leave the host other than asked: the session exits non-zero.
NOT_DONE = {"refused", "not-started", "rolled-back", "unreadable", "undo-failed", "not-found"}


def add_options(group) -> None:
    group.addoption("--fix", action="store_true", help="plan the remediations (fixes/*.sh) for what fails, show the "
                                                        "plan, ask, apply, then audit again")
    group.addoption("--dry-run", action="store_true", help="with --fix: show the plan and change nothing")
    group.addoption("--yes", action="store_true", help="with --fix: apply without asking (automation)")
    group.addoption("--plan-json", metavar="FILE", help="with --fix: also write the plan as JSON (change tickets)")
    group.addoption("--fix-detach", action="store_true",
                    help="with --fix: also remove devices from VMs that must not have them (never done otherwise)")
    group.addoption("--undo", metavar="RUN-ID", help="revert a --fix run (its id is printed by --fix), then audit again")


def check_options(config, targets) -> bool:
    """Usage errors before anything runs; True when --fix or --undo is asked for."""
    opt = config.option
    fix, undo = opt.fix, opt.undo
    if not fix and (opt.dry_run or opt.yes or opt.plan_json or opt.fix_detach):
        raise pytest.UsageError("--dry-run, --yes, --plan-json and --fix-detach go with --fix")
    if fix and undo:
        raise pytest.UsageError("--fix and --undo cannot be combined: undo a run first, then fix again")
    if not fix and not undo:
        return False
    if getattr(opt, "numprocesses", None) or hasattr(config, "workerinput"):
        raise pytest.UsageError("--fix and --undo run without pytest-xdist (-n): one plan, one confirmation")
    copies = [t.name for t in targets if t.sysroot or t.saved_output]
    if copies and (undo or not opt.dry_run):
        raise pytest.UsageError(f"--{'undo' if undo else 'fix'} changes live hosts only; {', '.join(copies)} is a "
                                "copy (--sysroot/--facts): use --fix --dry-run to see its plan")
    if undo and not apply.RUN_ID.match(undo):
        raise pytest.UsageError(f"--undo {undo}: not a run id (e.g. 20261201T021900Z-1a2b, printed by --fix)")
    if fix and not opt.dry_run and not opt.yes and not _terminal(config):
        raise pytest.UsageError("--fix needs a confirmation: run it from a terminal, or add --yes "
                                "(or --dry-run to only see the plan)")
    return True


class FixSession:
    def __init__(self, config, state):
        self.config, self.state = config, state
        self.locked = []  # targets whose run lock this session holds
        self.tr = config.pluginmanager.get_plugin("terminalreporter")

    def echo(self, line: str = "") -> None:
        if self.tr:
            self.tr.write_line(line)
        else:
            print(line)

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtestloop(self, session):
        if session.testsfailed or session.config.option.collectonly:
            return None
        opt = self.config.option
        self.echo("")
        if opt.undo:
            self.undo(opt.undo)
        else:
            self.fix(opt)
        return None  # the checks run next and judge the hosts as they are now

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session) -> None:
        """A run that did not do what was asked fails the session, even when every check passes."""
        if session.exitstatus == 0 and any(r["outcome"] in NOT_DONE for r in self.state.fix_runs):
            session.exitstatus = pytest.ExitCode.TESTS_FAILED

    def pytest_terminal_summary(self, terminalreporter) -> None:
        """After the re-audit: what each run did, so the last screen says it."""
        if not self.state.fix_runs:
            return
        terminalreporter.section("iommu-audit --fix" if not self.config.option.undo else "iommu-audit --undo")
        for r in self.state.fix_runs:
            line = f"{r['host']}: run {r['run_id']}: {r['outcome']}"
            if r["outcome"] in ("applied", "rolled-back", "undone", "undo-failed"):
                line += f" (log: {r['log_dir']} on the host)"
            if r.get("note"):
                line += f": {r['note']}"
            if r["reboot_required"]:
                line += "; REBOOT REQUIRED"
            if r["outcome"] == "applied":
                line += f"; undo with --undo={r['run_id']}"
            terminalreporter.line(line)

    def fix(self, opt) -> None:
        run_id = apply.new_run_id()
        plans, hosts = [], {}
        try:
            self._fix(opt, run_id, plans, hosts)
        finally:
            for t in self.locked:
                apply.unlock(apply.Host(t.host), run_id)

    def take_lock(self, t, run_id: str) -> bool:
        """The host's run lock, before its facts are read for the plan: no plan from a host mid-change."""
        try:
            notes = apply.lock(apply.Host(t.host), run_id)
        except apply.FixError as exc:
            self.echo(f"{t.name}: refused: {exc}")
            self.state.fix_runs.append({**_record(run_id, t, "refused", None), "note": str(exc)})
            return False
        for note in notes:
            self.echo(f"[{t.name}] {note}")
        self.locked.append(t)
        self.forget(t)
        return True

    def _fix(self, opt, run_id, plans, hosts) -> None:
        state = self.state
        for t in state.targets:
            if not opt.dry_run and not self.take_lock(t, run_id):
                continue
            state.gather(t)
            if t.name in state.errors:
                self.echo(f"host {t.name}: cannot plan: {state.errors[t.name]}")
                state.fix_runs.append(_record(run_id, t, "unreadable", None))
                continue
            try:
                plan = plan_host(state.facts[t.name], state.profile_for(t), detach=opt.fix_detach)
            except PlanError as exc:
                self.echo(f"host {t.name}: refused: {exc}")
                state.fix_runs.append(_record(run_id, t, "refused", None))
                continue
            plans.append(plan)
            hosts[plan.host] = t
        self.echo(f"iommu-audit --fix plan {run_id} (profile {state.profile.name}):")
        for line in render.text(plans):
            self.echo(line)
        if opt.plan_json:
            Path(opt.plan_json).write_text(render.as_json(plans, run_id, state.profile.name))
            self.echo(f"plan written to {opt.plan_json}")
        todo = [p for p in plans if p.changes]
        if opt.dry_run or not todo:
            self.echo("dry run: nothing changed" if opt.dry_run else "nothing to do: every fixable requirement holds")
            for p in plans:
                state.fix_runs.append(_record(run_id, hosts[p.host], "dry-run" if opt.dry_run else "nothing-to-do", p))
            return
        if not opt.yes and not self.confirm(sum(len(p.changes) for p in todo), len(todo)):
            self.echo("not applied: nothing changed")
            for p in plans:
                state.fix_runs.append(_record(run_id, hosts[p.host], "declined", p))
            return
        for p in plans:
            t = hosts[p.host]
            if not p.changes:
                state.fix_runs.append(_record(run_id, t, "nothing-to-do", p))
                continue
            self.echo(f"[{p.host}] applying run {run_id} (log and backups: {apply.LOG_ROOT}/{run_id}/ on the host)")
            try:
                outcome = apply.apply_plan(apply.Host(t.host), p, run_id, self.echo,
                                           verify=lambda step, t=t: self.verify(t, step))
            except apply.FixError as exc:
                self.echo(f"[{p.host}] not applied: {exc}")
                outcome = "not-started"
            record = _record(run_id, t, outcome, p)
            after = self.regather(t)
            record["after"] = after.failing if after else None
            state.fix_runs.append(record)
            self.echo(f"[{p.host}] {outcome}" + ("; REBOOT REQUIRED for the boot configuration to take effect"
                                                 if outcome == "applied" and p.reboot_required else "")
                      + (f"; undo with --undo {run_id}" if outcome == "applied" else ""))
        self.echo("re-auditing: the checks below judge the hosts after the fix")

    def undo(self, run_id: str) -> None:
        for t in self.state.targets:
            if not self.take_lock(t, run_id):
                continue
            try:
                steps = apply.undo_run(apply.Host(t.host), t.name, run_id, self.echo)
                outcome = "undone" if all(s["status"] != "undo failed" for s in steps) else "undo-failed"
            except apply.FixError as exc:
                self.echo(f"[{t.name}] {exc}")
                steps, outcome = [], "not-found"
            finally:
                apply.unlock(apply.Host(t.host), run_id)
            record = _record(run_id, t, outcome, None)
            record["steps"] = steps
            after = self.regather(t)
            record["after"] = after.failing if after else None
            self.state.fix_runs.append(record)
            self.echo(f"[{t.name}] undo of {run_id}: {outcome}")

    def verify(self, t, step) -> str:
        """A boot configuration step, judged on the host read again (plan.boot_unmet); "" when it holds."""
        if step.requirement != "cmdline-persistent":
            return ""
        self.forget(t)
        self.state.gather(t)
        if t.name not in self.state.facts:
            return f"cannot read the host again: {self.state.errors.get(t.name, 'no facts')}"
        return boot_unmet(self.state.facts[t.name], self.state.profile_for(t), "vfio-ids-scope" in step.repairs)

    def forget(self, t) -> None:
        for d in (self.state.gathered, self.state.facts, self.state.errors):
            d.pop(t.name, None)

    def regather(self, t):
        """Forget the host's facts and read them again: the checks then see the fixed host."""
        state = self.state
        self.forget(t)
        state.gather(t)
        if t.name not in state.facts:
            return None
        try:
            return plan_host(state.facts[t.name], state.profile_for(t), detach=self.config.option.fix_detach)
        except PlanError:
            return None

    def confirm(self, changes: int, hosts: int) -> bool:
        question = f"Apply {changes} change(s) on {hosts} host(s)? Type 'yes' to go on: "
        with _real_stdin(self.config):
            try:
                answer = input(question)
            except EOFError:  # the terminal went away: no is the answer
                answer = ""
        return answer.strip().lower() == "yes"


@contextlib.contextmanager
def _real_stdin(config):
    """The user's stdin, not pytest's: its capture puts /dev/null on fd 0 (and its
    global_and_fixture_disabled() leaves stdin captured)."""
    capman = config.pluginmanager.get_plugin("capturemanager")
    if capman is None:  # -p no:capture
        yield
        return
    capturing = capman._global_capturing is not None and capman._global_capturing.is_started()
    capman.suspend_global_capture(in_=True)
    try:
        yield
    finally:
        if capturing:  # else out/err stay as they were (shown); the next test's capture takes stdin again
            capman.resume_global_capture()


def _terminal(config) -> bool:
    with _real_stdin(config):
        return sys.stdin.isatty()


def _record(run_id, target, outcome, plan) -> dict:
    """One host's --fix/--undo run, as the report renders it (documented in NOTES.md)."""
    return {"run_id": run_id, "host": target.name, "source": target.source, "outcome": outcome,
            "log_dir": f"{apply.LOG_ROOT}/{run_id}",
            "reboot_required": bool(plan and plan.reboot_required and outcome == "applied"),
            "steps": [s.record() for s in plan.steps] if plan else [],
            "before": plan.failing if plan else None, "after": None}
