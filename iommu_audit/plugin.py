"""pytest plugin: --profile and host options, the audit state, verdict enforcement.

Registered as a pytest11 entry point (so its options are known before pytest
looks at paths) and by the project's conftest.py when run from a checkout.
checks/conftest.py parametrizes the checks and provides their fixtures. Facts
are gathered once per host, on first use, and every check asserts on them.
"""

import datetime
import html
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

try:  # a pytest outside the project's .venv (a system pytest on the PATH): one line, not a traceback
    import testinfra
    import yaml  # noqa: F401
except ImportError as _missing:
    sys.stderr.write(f"iommu-audit: this Python ({sys.executable}) lacks the package {_missing.name!r}: set up with "
                     "`bash scripts/install.sh`, then `. .venv/bin/activate` (or run `.venv/bin/python -m pytest ...`)\n")
    sys.exit(4)  # SystemExit passes through pytest's plugin and conftest loaders

from iommu_audit import drift, fleet, gather, profile as profiles
from iommu_audit.facts import HostFacts
from iommu_audit.fix import session as fix_session
from iommu_audit.report import plugin as report_plugin
from iommu_audit.requirements import CATALOG, DEVICE, DISK, RECOMMENDED
from iommu_audit.verdict import Verdict, failed, passed

SUBJECTS = ("device", "host_device", "disk")
PRESENCE = {DEVICE: "device-present", DISK: "disk-present"}  # what reports a device or disk as missing
# The checkout the plugin runs from (installed editable): its checks and profiles are used
# whatever root directory pytest picked from the command line ("--sysroot /x" moves it).
PROJECT = Path(__file__).resolve().parent.parent
CHECKS = PROJECT / "checks"
PROFILES = PROJECT / "profiles"
# Transports whose one command runs as it is: safe-ssh wraps it in mktemp/rm on the host, and
# ansible's own modules (--force-ansible, or a connection testinfra cannot open itself) copy
# files into the host's ~/.ansible/tmp. ansible:// is resolved to the ssh/paramiko/local host it names.
READ_ONLY_TRANSPORTS = ("local", "ssh", "paramiko")


def pytest_addoption(parser: pytest.Parser, pluginmanager: pytest.PytestPluginManager) -> None:
    g = parser.getgroup("iommu-audit")
    g.addoption("--profile", help="hardware profile: a name from profiles/ (dl360-gen9) or a path to a .yaml file")
    g.addoption("--sysroot", help="audit offline copies of hosts: directories (comma separated) holding proc/, sys/, "
                                  "dev/, etc/ and a dmesg capture (see README)")
    g.addoption("--facts", help="re-run the checks on facts saved earlier with --save-facts")
    g.addoption("--save-facts", metavar="FILE", help="write what was gathered from each host to FILE (JSON)")
    g.addoption("--probe-timeout", metavar="SECONDS", type=float, default=gather.DEFAULT_TIMEOUT,
                help=f"give up on a host whose probe has not answered after SECONDS (default "
                     f"{gather.DEFAULT_TIMEOUT}): its facts-gathered check fails, naming the host")
    fleet.add_options(g)
    drift.add_options(g)
    fix_session.add_options(g)
    report_plugin.add_options(g, pluginmanager)  # the auditor's report: iommu_audit/report/


@pytest.hookimpl(tryfirst=True)
def pytest_load_initial_conftests(early_config: pytest.Config) -> None:
    """With --profile (or --profile-map), the project is pytest's root directory, however the path options were written.

    pytest picks its root before it knows plugin options: in "--sysroot /srv/copy" it takes
    /srv/copy for a test path and roots the run there (test ids relative to the copy, its cache
    written into it). It offers no public way to change that afterwards, so this sets what
    --rootdir=<project> would have set, before anything uses it.
    """
    ns = early_config.known_args_namespace
    if not (ns.profile or ns.profile_map) or not CHECKS.is_dir():
        return
    if not ns.file_or_dir:
        # Else pytest loads the conftest.py of every test* directory where it was started (this
        # checkout's tests/, or whatever the working directory holds) and runs every check's hooks
        # through a per-directory proxy: the audit needs checks/ alone.
        ns.file_or_dir = [str(CHECKS)]
    if ns.rootdir or early_config.rootpath == PROJECT:
        return
    if ns.confcutdir == str(early_config.rootpath):  # pytest derived it from the wrong root
        ns.confcutdir = str(PROJECT)
    early_config._rootpath = PROJECT


@dataclass
class AuditState:
    profile: profiles.Profile
    targets: list[gather.Target]
    gathered: dict[str, gather.Gathered] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    facts: dict[str, HostFacts] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)  # waivers and advisories, for the summary
    unread: set[str] = field(default_factory=set)  # hosts whose checks were skipped for want of facts
    host_profiles: dict[str, profiles.Profile] = field(default_factory=dict)  # per host; else `profile`
    fix_runs: list[dict] = field(default_factory=list)  # one per host and --fix/--undo run (fix/session.py)
    running: pytest.Item | None = None  # the check being run, which `audit` judges
    pending: dict[str, gather.Pending] = field(default_factory=dict)  # hosts being gathered ahead (prefetch)

    def profile_for(self, target: gather.Target | None) -> profiles.Profile:
        return self.host_profiles.get(target.name, self.profile) if target else self.profile

    def prefetch(self) -> None:
        """Start gathering the hosts now (gather.Pending); gather() then takes what it read. Host copies
        beyond the first READ_AHEAD are read when their checks run: each view read ahead stays in
        memory (/dev/shm) until its probe is done."""
        later = {t.name for t in [t for t in self.targets if t.sysroot][gather.READ_AHEAD:]}
        for t in self.targets:
            if t.name not in later:
                self.pending[t.name] = gather.Pending(t)

    def close_pending(self) -> None:
        for pending in self.pending.values():
            pending.close()
        self.pending.clear()

    def gather(self, target: gather.Target) -> None:
        if target.name in self.gathered or target.name in self.errors:
            return
        pending = self.pending.pop(target.name, None)
        try:
            g = pending.result() if pending else gather.gather(target)
        except gather.GatherError as exc:
            self.errors[target.name] = str(exc)
            return
        self.gathered[target.name] = g  # kept even if unparseable, so --save-facts can carry it to a bug report
        try:
            self.facts[target.name] = gather.parse(g)
        except gather.GatherError as exc:
            self.errors[target.name] = str(exc)


STATE = pytest.StashKey[AuditState]()


def _under_checks(path: Path) -> bool:
    return path == CHECKS or CHECKS in path.parents


def _collects_checks(config: pytest.Config) -> bool:
    if not (CHECKS / "conftest.py").is_file():  # installed without its checkout: nothing to run
        return False
    for arg in config.args:
        path = Path(arg.split("::")[0]).resolve()
        if _under_checks(path) or path in CHECKS.parents:  # checks/..., or a directory above it
            return True
    return False


def audit_requested(config: pytest.Config) -> bool:
    """--profile or --profile-map, or the checks collected (profiles then come from the inventory)."""
    return bool(config.getoption("profile") or config.getoption("profile_map") or _collects_checks(config))


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
            targets.append(gather.Target(_sysroot_name(path), f"sysroot:{d}", sysroot=str(path.resolve())))
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
        targets = [_live_target(h) for h in hosts]
    if not targets:
        raise pytest.UsageError("no host to audit: the --facts file or --sysroot list is empty")
    if not 0 < opt.probe_timeout < 86400:
        raise pytest.UsageError(f"--probe-timeout {opt.probe_timeout:g}: give a number of seconds above 0, e.g. 120")
    for t in targets:
        t.timeout = opt.probe_timeout
    names = [t.name for t in targets]
    for i, t in enumerate(targets):  # two hosts with one name would share test ids
        if names.count(t.name) > 1:
            t.name = f"{t.name}.{i}"
    return targets


def _sysroot_name(path: Path) -> str:
    """The copy's directory name; for --sysroot=/ (this machine's files) the host name it holds."""
    name = path.resolve().name
    if name:
        return name
    for f in ("proc/sys/kernel/hostname", "etc/hostname"):
        try:
            name = (path / f).read_text(errors="replace").strip()
        except OSError:
            continue
        if re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}", name):
            return name
    return "sysroot"


def _live_target(host) -> gather.Target:
    """A testinfra host as a target, refused unless its transport runs the probe and writes nothing."""
    backend = host.backend
    kind = backend.get_connection_type()
    inventory_vars = fleet.inventory_vars(host)
    if kind == "ansible":  # named as in the inventory, run through the connection testinfra opens itself
        name = backend.host
        inner = None if backend.force_ansible else backend.ansible_runner.get_host(
            name, ssh_config=backend.ssh_config, ssh_identity_file=backend.ssh_identity_file)
        if inner is None or inner.backend.get_connection_type() not in READ_ONLY_TRANSPORTS:
            raise pytest.UsageError(f"--hosts ansible://{name}: would run through Ansible modules (copied into the "
                                    "host's ~/.ansible/tmp) or a container transport; the audit is read-only: drop "
                                    "--force-ansible, or give the host an ssh, paramiko or local connection")
        return gather.Target(name, f"ansible://{name}", host=inner, inventory_vars=inventory_vars)
    if kind not in READ_ONLY_TRANSPORTS:
        hint = ("safe-ssh:// creates and removes temporary files on the host (mktemp, rm); use ssh://"
                if kind == "safe-ssh" else "the audit reads hosts over local://, ssh://, paramiko:// or ansible://")
        raise pytest.UsageError(f"--hosts {kind}://{backend.get_hostname()}: refused: {hint}")
    if kind == "local":
        return gather.Target("local", "local://", host=host)
    spec = backend.host  # HostSpec(name, port, user, password): two hosts behind one address differ by port
    name = f"{spec.name}:{spec.port}" if spec.port else spec.name
    user = f"{spec.user}@" if spec.user else ""
    return gather.Target(name, f"{kind}://{user}{name}", host=host)


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
    given = config.getoption("profile")
    if not audit_requested(config):
        return  # not an audit (the project's own tests, another suite)
    if not (CHECKS / "conftest.py").is_file():
        raise pytest.UsageError(f"iommu-audit is installed without its checks ({CHECKS} is missing): "
                                "install it from a clone with: bash scripts/install.sh")
    if config.args_source != pytest.Config.ArgsSource.ARGS:
        # No test path given: the checks, wherever pytest's root directory ended up.
        config.args = [str(CHECKS)]
    try:
        profile = profiles.load(given, PROFILES) if given else None
    except profiles.ProfileError as exc:
        raise pytest.UsageError(f"profile error: {exc}") from None
    _check_save_facts(config.getoption("save_facts"))
    if "ansible://" in (config.option.hosts or ""):
        fleet.ansible_on_path()
    targets = _targets(config)
    host_profiles = fleet.host_profiles(config, targets, profile, PROFILES)
    # Without --profile every host has its own (--profile-map, inventory): the first one's is the run's.
    config.stash[STATE] = AuditState(profile or host_profiles[targets[0].name], targets, host_profiles=host_profiles)
    drift.configure(config)
    if config.pluginmanager.hasplugin("xdist"):
        config.pluginmanager.register(fleet.XdistHooks(config.stash[STATE]), "iommu-audit-xdist")
    config.pluginmanager.register(UnreadHosts(config.stash[STATE]), "iommu-audit-unread-hosts")
    state = config.stash[STATE]
    fixing = fix_session.check_options(config, state.targets)
    if fixing:
        config.pluginmanager.register(fix_session.FixSession(config, state), "iommu-audit-fix")
    # A plain audit in this process reads its hosts while pytest collects. Not --fix (it reads each
    # host once it holds the host's lock), not under pytest-xdist (each worker reads its own hosts).
    if not (fixing or config.option.collectonly or config.getoption("numprocesses", None) or fleet.is_worker(config)):
        state.prefetch()


def _check_save_facts(path: str | None) -> None:
    """Refuse an unwritable --save-facts path before the run, not after it (the results would be lost)."""
    if not path:
        return
    target = Path(path)
    if target.is_dir():
        raise pytest.UsageError(f"--save-facts {path}: is a directory; give a file name, e.g. {target / 'facts.json'}")
    parent = target.parent
    if not parent.is_dir():
        raise pytest.UsageError(f"--save-facts {path}: directory {parent} does not exist; create it or choose "
                                "another path")
    if not os.access(parent, os.W_OK) or (target.exists() and not os.access(target, os.W_OK)):
        raise pytest.UsageError(f"--save-facts {path}: not writable by this user; choose another path")


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
    # No run-specific text (where the facts came from) in results: the report's hash must not depend on it.
    return passed(f"host {f.hostname or '?'}, kernel {f.kernel or '?'}, {len(f.pci)} PCI functions",
                  notes)


class Judge:
    """Turns a Verdict into a pytest outcome for the running check, honouring severity and waivers."""

    def __init__(self, state: AuditState):
        self.state = state

    def __call__(self, verdict: Verdict) -> None:
        node = self.state.running  # one check at a time (per process): the attributes below are its own
        marker = node.get_closest_marker("requirement")
        if marker is None or marker.args[0] not in CATALOG:
            raise pytest.UsageError(f"{node.nodeid}: checks need @pytest.mark.requirement(<id from the catalog>)")
        self.requirement = req = CATALOG[marker.args[0]]
        params = node.callspec.params if hasattr(node, "callspec") else {}
        self.subject = next((params[s] for s in SUBJECTS if s in params), None)
        self.host = params.get("target")
        profile = self.state.profile_for(self.host)
        severity = profile.severity_of(req.id)
        for key, value in (("requirement", req.id), ("severity", severity), ("profile", profile.name),
                           ("found", verdict.found),
                           ("expected", verdict.expected), ("fix", verdict.fix), ("evidence", list(verdict.evidence))):
            node.user_properties.append((key, value))
        subject = self.subject.name if self.subject else None
        host = self.host.name if self.host else "?"
        if verdict.skip:
            verdict = self._not_checked(verdict, subject, host)
        if verdict.ok:
            return
        message = self._message(verdict, subject, host)
        waiver = self._waiver(subject, host)
        today = datetime.date.today()
        if waiver and waiver.expires >= today:
            note = f"WAIVED until {waiver.expires} by {waiver.approved_by}: {waiver.reason} | found: {verdict.found}"
            self.state.notes.append(f"{node.nodeid}: {note}")
            _xfail(note)
        expired = f"expired on {waiver.expires} ({waiver.reason})" if waiver else ""
        if severity == RECOMMENDED:
            note = f"RECOMMENDED: {verdict.found} | fix: {verdict.fix}" + (f" | waiver {expired}" if expired else "")
            self.state.notes.append(f"{node.nodeid}: {note}")
            _xfail(note)
        if expired:
            message += f"\n  waiver:      {expired}"
        pytest.fail(message, pytrace=False)

    def _not_checked(self, verdict: Verdict, subject: str | None, host: str) -> Verdict:
        """A check that could not run on its device or disk fails, unless that device's presence is waived."""
        presence = PRESENCE.get(self.requirement.scope)
        waiver = self._waiver(subject, host, presence) if presence else None
        if waiver and waiver.expires >= datetime.date.today():
            pytest.skip(f"{verdict.skip} ({presence} waived until {waiver.expires}: {waiver.reason})")
        fix = (f"make {subject} present on {host} (see {presence}), or waive {presence} for it while it is away"
               if presence else "see the finding")
        return failed(f"not checked: {verdict.skip}", f"{self.requirement.title}, proven", fix)

    def _message(self, v: Verdict, subject: str | None, host: str) -> str:
        # The first line is what pytest's short summary shows: make it the finding itself.
        lines = [f"[{self.requirement.id}] " + (f"{subject} on {host}" if subject else host) + f": {v.found}",
                 f"  requirement: {self.requirement.title}", f"  expected:    {v.expected}",
                 f"  fix:         {v.fix}"]
        lines += [f"  evidence:    {e}" for e in v.evidence]
        return "\n".join(lines)

    def _waiver(self, subject: str | None, host: str, requirement: str | None = None):
        return waiver_for(self.state.profile_for(self.host), requirement or self.requirement.id, subject, host)


class _Noted(pytest.xfail.Exception):
    """A waived or advisory finding: an xfail whose note says it all (see pytest_runtest_makereport)."""


def _xfail(note: str):
    raise _Noted(note, pytrace=False)


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    """The report of a waived or advisory check, with its note as the whole text: pytest renders a
    traceback for every xfail, a few 10 ms each, and a host with hundreds of advisories spent most of
    its run on them. pytest's skipping plugin then marks the report xfailed, as for any xfail."""
    if call.excinfo is None or not isinstance(call.excinfo.value, _Noted):
        return None
    sections = [(f"Captured {key} {when}", content) for when, key, content in item._report_sections]
    return pytest.TestReport(item.nodeid, item.location, dict.fromkeys(item.keywords, 1), "skipped",
                             call.excinfo.value.msg, call.when, sections, call.duration, call.start, call.stop,
                             user_properties=item.user_properties)


def waiver_for(profile: profiles.Profile, requirement: str, subject: str | None, host: str):
    """The matching waiver that lasts longest: a renewal listed after an expired waiver wins."""
    matching = [w for w in profile.waivers
                if w.requirement == requirement and w.device in (None, subject) and w.host in (None, host)]
    return max(matching, key=lambda w: w.expires, default=None)


@pytest.hookimpl(tryfirst=True)  # before -k/-m deselect: deselecting some (or all) checks is the user's choice
def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.stash.get(STATE, None) is None or session.testsfailed:  # collection errors speak for themselves
        return
    if not any(_under_checks(item.path) for item in items):
        given = " ".join(config.args)
        raise pytest.UsageError(f"--profile given, but no audit check was selected: the test paths given ({given}) "
                                f"hold none of the checks in {CHECKS}; run without test paths, "
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


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    state = item.config.stash.get(STATE, None)
    if state:
        state.running = item


UNREAD = "iommu-audit-unread-host"  # user property of a check skipped for want of its host's facts


class UnreadHosts:
    """Collects the hosts whose checks were skipped for want of facts, from the test reports:
    under pytest-xdist the workers gather, and only reports reach the controller that decides."""

    def __init__(self, state: AuditState):
        self.state = state

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(self, item: pytest.Item, call: pytest.CallInfo):
        report = yield
        target = item.callspec.params.get("target") if hasattr(item, "callspec") else None
        if report.skipped and report.when == "setup" and target and target.name in self.state.errors:
            report.user_properties.append((UNREAD, target.name))  # the `facts` fixture skipped it
        return report

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.skipped:
            self.state.unread.update(value for key, value in report.user_properties if key == UNREAD)


def pytest_terminal_summary(terminalreporter, config: pytest.Config) -> None:
    state = config.stash.get(STATE, None)
    if state and state.notes:
        terminalreporter.section("iommu-audit: waived and recommended (not required) findings")
        for note in state.notes:
            terminalreporter.line(note)
    if state and state.unread:
        terminalreporter.line(f"iommu-audit: not read, so not ready: {', '.join(sorted(state.unread))} "
                              "(see facts-gathered)")
    missing = drift.uncompared(config, [t.name for t in state.targets]) if state else []
    if missing:
        terminalreporter.line(f"iommu-audit: not in the baseline, so not compared: {', '.join(missing)} "
                              "(see test_no_drift)")


def pytest_sessionfinish(session: pytest.Session) -> None:
    state = session.config.stash.get(STATE, None)
    if state is None:
        return
    uncompared = drift.uncompared(session.config, [t.name for t in state.targets])
    if (state.unread or uncompared) and session.exitstatus == pytest.ExitCode.OK:
        # facts-gathered / no-drift fail such a host, but -k may have deselected them: a host that was not read,
        # or not compared with a --baseline given, never passes.
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
    path = session.config.getoption("save_facts", None)
    if fleet.is_worker(session.config):  # the controller writes the file (and the report) from every worker's hosts
        fleet.worker_output(session.config, state.gathered, state.errors)
        return
    if not path:
        return
    _save_facts(state, path, session)


def _save_facts(state: AuditState, path: str, session: pytest.Session) -> None:
    writer = session.config.get_terminal_writer()
    for t in state.targets:
        state.gather(t)
    saved = [state.gathered[t.name] for t in state.targets if t.name in state.gathered]
    for name, error in state.errors.items():
        if name not in state.gathered:
            writer.line(f"iommu-audit: facts of {name} not saved: {error}")
    if not saved:
        writer.line(f"iommu-audit: nothing gathered, {path} not written")
        return
    try:
        gather.save(path, saved)
    except OSError as exc:  # checked before the run; the disk may still fill up or the directory vanish
        writer.line(f"iommu-audit: --save-facts {path}: not written ({exc.strerror})")
        if session.exitstatus == pytest.ExitCode.OK:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_unconfigure(config: pytest.Config) -> None:
    state = config.stash.get(STATE, None)
    if state:
        state.close_pending()  # hosts read ahead whose checks never ran (-k, an interrupted run)
