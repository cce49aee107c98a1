"""pytest plugin: --profile and host options, the audit state, verdict enforcement.

Registered as a pytest11 entry point (so its options are known before pytest
looks at paths) and by the project's conftest.py when run from a checkout.
checks/conftest.py parametrizes the checks and provides their fixtures. Facts
are gathered once per host, on first use, and every check asserts on them.
"""

import datetime
import html
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import testinfra

from iommu_audit import drift, fleet, gather, profile as profiles
from iommu_audit.facts import HostFacts
from iommu_audit.fix import session as fix_session
from iommu_audit.requirements import CATALOG, RECOMMENDED
from iommu_audit.verdict import Verdict, failed, passed

SUBJECTS = ("device", "host_device", "disk")


def pytest_addoption(parser: pytest.Parser) -> None:
    g = parser.getgroup("iommu-audit")
    g.addoption("--profile", help="hardware profile: a name from profiles/ (dl360-gen9) or a path to a .yaml file")
    g.addoption("--sysroot", help="audit offline copies of hosts: directories (comma separated) holding proc/, sys/, "
                                  "dev/, etc/ and a dmesg capture (see README)")
    g.addoption("--facts", help="re-run the checks on facts saved earlier with --save-facts")
    g.addoption("--save-facts", metavar="FILE", help="write what was gathered from each host to FILE (JSON)")
    fleet.add_options(g)
    drift.add_options(g)
    fix_session.add_options(g)


@dataclass
class AuditState:
    profile: profiles.Profile
    targets: list[gather.Target]
    gathered: dict[str, gather.Gathered] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    facts: dict[str, HostFacts] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)  # waivers and advisories, for the summary
    host_profiles: dict[str, profiles.Profile] = field(default_factory=dict)  # per host; else `profile`
    fix_runs: list[dict] = field(default_factory=list)  # one per host and --fix/--undo run (fix/session.py)

    def profile_for(self, target: gather.Target | None) -> profiles.Profile:
        return self.host_profiles.get(target.name, self.profile) if target else self.profile

    def gather(self, target: gather.Target) -> None:
        if target.name in self.gathered or target.name in self.errors:
            return
        try:
            g = gather.gather(target)
        except gather.GatherError as exc:
            self.errors[target.name] = str(exc)
            return
        self.gathered[target.name] = g  # kept even if unparseable, so --save-facts can carry it to a bug report
        try:
            self.facts[target.name] = gather.parse(g)
        except gather.GatherError as exc:
            self.errors[target.name] = str(exc)


STATE = pytest.StashKey[AuditState]()


def _under_checks(config: pytest.Config, path: Path) -> bool:
    checks_dir = config.rootpath / "checks"
    return path == checks_dir or checks_dir in path.parents


def _collects_checks(config: pytest.Config) -> bool:
    checks_dir = config.rootpath / "checks"
    if not (checks_dir / "conftest.py").is_file():  # not an iommu-audit tree: stay out of the way
        return False
    for arg in config.args:
        path = Path(arg.split("::")[0]).resolve()
        if _under_checks(config, path) or path in checks_dir.parents:  # checks/..., or a directory above it
            return True
    return False


def _targets(config: pytest.Config) -> list[gather.Target]:
    opt = config.option
    chosen = [name for name, value in (("--hosts", opt.hosts), ("--sysroot", opt.sysroot), ("--facts", opt.facts))
              if value]
    if len(chosen) > 1:
        raise pytest.UsageError(f"{' and '.join(chosen)} cannot be combined: audit live hosts, sysroots or saved facts")
    if opt.facts:
        try:
            targets = gather.load(opt.facts)
        except gather.GatherError as exc:
            raise pytest.UsageError(str(exc)) from None
    elif opt.sysroot:
        targets = []
        for d in [p for p in opt.sysroot.split(",") if p]:
            path = Path(d)
            if not (path / "proc").is_dir() and not (path / "sys").is_dir():
                raise pytest.UsageError(f"--sysroot {d}: not a host copy (no proc/ or sys/ inside); see README, 'Sysroot layout'")
            targets.append(gather.Target(path.resolve().name, f"sysroot:{d}", sysroot=str(path.resolve())))
    else:
        specs = opt.hosts.split(",") if opt.hosts else ["local://"]
        try:
            hosts = testinfra.get_hosts(specs, connection=opt.connection, ssh_config=opt.ssh_config,
                                        ssh_identity_file=opt.ssh_identity_file, ssh_extra_args=opt.ssh_extra_args,
                                        sudo=opt.sudo,
                                        sudo_user=opt.sudo_user, ansible_inventory=opt.ansible_inventory,
                                        force_ansible=opt.force_ansible)
        except Exception as exc:  # testinfra raises RuntimeError/ValueError/ImportError for bad specs
            raise pytest.UsageError(f"--hosts {opt.hosts}: {exc}") from None
        targets = []
        for h in hosts:
            local = h.backend.get_connection_type() == "local"
            name = "local" if local else h.backend.get_hostname()
            targets.append(gather.Target(name, h.backend.get_pytest_id(), host=h, inventory_vars=fleet.inventory_vars(h)))
    if not targets:
        raise pytest.UsageError("no host to audit: the --facts file or --sysroot list is empty")
    names = [t.name for t in targets]
    for i, t in enumerate(targets):  # two hosts with one name would share test ids
        if names.count(t.name) > 1:
            t.name = f"{t.name}.{i}"
    return targets


class HtmlColumns:
    """pytest-html: show each check's requirement, severity and finding (pass or fail) in the table."""

    def pytest_html_results_table_header(self, cells: list) -> None:
        cells.insert(2, '<th class="sortable" data-column-type="requirement">Requirement</th>')
        cells.insert(3, "<th>Severity</th>")
        cells.insert(4, "<th>Finding</th>")

    def pytest_html_results_table_row(self, report: pytest.TestReport, cells: list) -> None:
        props = dict(report.user_properties)
        for i, key in ((2, "requirement"), (3, "severity"), (4, "found")):
            cells.insert(i, f'<td class="col-{key}">{html.escape(str(props.get(key, "")))}</td>')


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "requirement(id): the iommu-audit requirement a check proves")
    if config.pluginmanager.hasplugin("html"):
        config.pluginmanager.register(HtmlColumns(), "iommu-audit-html")
    if not config.getoption("profile"):
        if _collects_checks(config):
            raise pytest.UsageError("--profile is required to run the checks, e.g. pytest --profile dl360-gen9 "
                                    "(a name from profiles/ or a path to a .yaml file)")
        return
    if not (config.rootpath / "checks" / "conftest.py").is_file():
        # pytest picks its root directory before it knows our options, so a value such as
        # "--sysroot /elsewhere" can move the root away from the project and its checks.
        raise pytest.UsageError(f"pytest chose {config.rootpath} as its root directory, which holds no iommu-audit "
                                "checks: run from the iommu-audit directory and write path options with '=' "
                                "(--profile=/path, --sysroot=/path, --facts=/path), "
                                "or add --rootdir=<iommu-audit directory>")
    try:
        profile = profiles.load(config.getoption("profile"), config.rootpath / "profiles")
    except profiles.ProfileError as exc:
        raise pytest.UsageError(f"profile error: {exc}") from None
    if "ansible://" in (config.option.hosts or ""):
        fleet.ansible_on_path()
    targets = _targets(config)
    config.stash[STATE] = AuditState(profile, targets, host_profiles=fleet.host_profiles(
        config, targets, profile, config.rootpath / "profiles"))
    drift.configure(config)
    if config.pluginmanager.hasplugin("xdist"):
        config.pluginmanager.register(fleet.XdistHooks(config.stash[STATE]), "iommu-audit-xdist")
    state = config.stash[STATE]
    if fix_session.check_options(config, state.targets):
        config.pluginmanager.register(fix_session.FixSession(config, state), "iommu-audit-fix")


def state_of(config: pytest.Config) -> AuditState:
    state = config.stash.get(STATE, None)
    if state is None:
        raise pytest.UsageError("--profile is required to run the checks")
    return state


def pytest_report_header(config: pytest.Config) -> list[str]:
    state = config.stash.get(STATE, None)
    if state is None:
        return []
    return [f"iommu-audit profile: {state.profile.name} ({state.profile.path})",
            "iommu-audit hosts: " + ", ".join(f"{t.name} ({t.source}{fleet.profile_note(state, t)})"
                                              for t in state.targets)]


def gathered_verdict(state: AuditState, target: gather.Target) -> Verdict:
    state.gather(target)
    if target.name in state.errors:
        return failed(state.errors[target.name], f"the probe runs on {target.source}",
                      "make the host reachable (or fix the sysroot/facts file) and run the audit again")
    f = state.facts[target.name]
    notes = []
    live = not (target.sysroot or target.saved_output)
    if live and f.uid != "0":
        notes.append("not root: kernel log and libvirt definitions may be unreadable; use --sudo")
    return passed(f"{target.source}: host {f.hostname or '?'}, kernel {f.kernel or '?'}, {len(f.pci)} PCI functions",
                  notes)


class Judge:
    """Turns a Verdict into a pytest outcome, honouring severity and waivers."""

    def __init__(self, request: pytest.FixtureRequest, state: AuditState):
        self.request = request
        self.state = state
        marker = request.node.get_closest_marker("requirement")
        if marker is None or marker.args[0] not in CATALOG:
            raise pytest.UsageError(f"{request.node.nodeid}: checks need @pytest.mark.requirement(<id from the catalog>)")
        self.requirement = CATALOG[marker.args[0]]
        params = getattr(request.node, "callspec", None)
        params = params.params if params else {}
        self.subject = next((params[s] for s in SUBJECTS if s in params), None)
        self.host = params.get("target")

    def __call__(self, verdict: Verdict) -> None:
        req, node = self.requirement, self.request.node
        profile = self.state.profile_for(self.host)
        severity = profile.severity_of(req.id)
        for key, value in (("requirement", req.id), ("severity", severity), ("profile", profile.name),
                           ("found", verdict.found),
                           ("expected", verdict.expected), ("fix", verdict.fix), ("evidence", list(verdict.evidence))):
            node.user_properties.append((key, value))
        if verdict.skip:
            pytest.skip(verdict.skip)
        if verdict.ok:
            return
        subject = self.subject.name if self.subject else None
        host = self.host.name if self.host else "?"
        message = self._message(verdict, subject, host)
        waiver = self._waiver(subject, host)
        today = datetime.date.today()
        if waiver and waiver.expires >= today:
            note = f"WAIVED until {waiver.expires} by {waiver.approved_by}: {waiver.reason} | found: {verdict.found}"
            self.state.notes.append(f"{node.nodeid}: {note}")
            pytest.xfail(note)
        expired = f"expired on {waiver.expires} ({waiver.reason})" if waiver else ""
        if severity == RECOMMENDED:
            note = f"RECOMMENDED: {verdict.found} | fix: {verdict.fix}" + (f" | waiver {expired}" if expired else "")
            self.state.notes.append(f"{node.nodeid}: {note}")
            pytest.xfail(note)
        if expired:
            message += f"\n  waiver:      {expired}"
        pytest.fail(message, pytrace=False)

    def _message(self, v: Verdict, subject: str | None, host: str) -> str:
        # The first line is what pytest's short summary shows: make it the finding itself.
        lines = [f"[{self.requirement.id}] " + (f"{subject} on {host}" if subject else host) + f": {v.found}",
                 f"  requirement: {self.requirement.title}", f"  expected:    {v.expected}",
                 f"  fix:         {v.fix}"]
        lines += [f"  evidence:    {e}" for e in v.evidence]
        return "\n".join(lines)

    def _waiver(self, subject: str | None, host: str):
        """The matching waiver that lasts longest: a renewal listed after an expired waiver wins."""
        matching = [w for w in self.state.profile_for(self.host).waivers
                    if w.requirement == self.requirement.id and w.device in (None, subject) and w.host in (None, host)]
        return max(matching, key=lambda w: w.expires, default=None)


@pytest.hookimpl(tryfirst=True)  # before -k/-m deselect: deselecting some (or all) checks is the user's choice
def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.stash.get(STATE, None) is None or session.testsfailed:  # collection errors speak for themselves
        return
    if not any(_under_checks(config, item.path) for item in items):
        given = " ".join(config.args)
        raise pytest.UsageError(f"--profile given, but no audit check was selected: the test paths given ({given}) "
                                f"hold none of the checks in {config.rootpath / 'checks'}; run without test paths, "
                                "or with paths under checks/ (e.g. checks/test_devices.py)")


@pytest.hookimpl(tryfirst=True)
def pytest_report_teststatus(report: pytest.TestReport, config: pytest.Config):
    reason = getattr(report, "wasxfail", "")
    if report.when == "call" and report.skipped and reason:
        if reason.startswith("WAIVED"):
            return "waived", "w", "WAIVED"
        if reason.startswith("RECOMMENDED"):
            return "advisory", "a", "ADVISORY"
    return None


def pytest_terminal_summary(terminalreporter, config: pytest.Config) -> None:
    state = config.stash.get(STATE, None)
    if state and state.notes:
        terminalreporter.section("iommu-audit: waived and recommended (not required) findings")
        for note in state.notes:
            terminalreporter.line(note)


def pytest_sessionfinish(session: pytest.Session) -> None:
    state = session.config.stash.get(STATE, None)
    path = session.config.getoption("save_facts", None)
    if state is None or not path:
        return
    if fleet.is_worker(session.config):  # the controller writes the file once, from every worker's hosts
        fleet.worker_output(session.config, state.gathered, state.errors)
        return
    for t in state.targets:
        state.gather(t)
    saved = [state.gathered[t.name] for t in state.targets if t.name in state.gathered]
    writer = session.config.get_terminal_writer()
    for name, error in state.errors.items():
        if name not in state.gathered:
            writer.line(f"iommu-audit: facts of {name} not saved: {error}")
    if saved:
        gather.save(path, saved)
    else:
        writer.line(f"iommu-audit: nothing gathered, {path} not written")
