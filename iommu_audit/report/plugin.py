"""pytest hooks of the report: --report/--json, result collection, pytest-html and JUnit integration.

Registered by iommu_audit/plugin.py while options are added, so that its pytest_configure runs
before pytest-html's (which reads --html) whatever order the plugins were loaded in.
"""

import datetime
import os
from pathlib import Path

import pytest

from iommu_audit.report import html, model, verify

CSS = Path(__file__).with_name("report.css")


def add_options(group, pluginmanager: pytest.PytestPluginManager) -> None:
    group.addoption("--report", action="store_true",
                    help="write the compliance report to reports/<profile>-<UTC time>.html (self-contained)")
    group.addoption("--json", dest="report_json", metavar="PATH",
                    help="write the report's data (matrix, verdicts, evidence, hash) as JSON to PATH")
    if not pluginmanager.has_plugin("iommu-audit-report"):
        pluginmanager.register(ReportPlugin(), "iommu-audit-report")


class ReportPlugin:
    def __init__(self):
        self.collector = model.Collector()
        self.doc: dict | None = None
        self.html_path: Path | None = None
        self.profile_name = ""

    @pytest.hookimpl(tryfirst=True)
    def pytest_configure(self, config: pytest.Config) -> None:
        from iommu_audit.plugin import audit_requested  # plugin imports this module
        if not audit_requested(config):
            return
        if config.getoption("report") and not config.getoption("htmlpath", None):
            stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
            name = Path(config.getoption("profile") or "fleet").stem
            config.option.htmlpath = str(config.rootpath / "reports" / f"{name}-{stamp}.html")
            config.option.self_contained_html = True
        if config.getoption("htmlpath", None):
            self.html_path = Path(config.option.htmlpath)
            config.option.css = [*config.option.css, str(CSS)]

    def pytest_sessionstart(self, session: pytest.Session) -> None:
        from iommu_audit.plugin import STATE
        state = session.config.stash.get(STATE, None)
        self.profile_name = state.profile.name if state else ""

    @pytest.hookimpl(tryfirst=True)  # before -k/-m deselect: deselected checks show as not checked
    def pytest_collection_modifyitems(self, items: list[pytest.Item]) -> None:
        for item in items:
            self.collector.collected(item)

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        self.collector.logreport(report)

    @pytest.hookimpl(tryfirst=True)  # before junitxml and pytest-html write their files
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        from iommu_audit.plugin import STATE
        state = session.config.stash.get(STATE, None)
        if state is None or hasattr(session.config, "workerinput"):  # xdist workers: the controller reports
            return
        self.doc = model.build(state, self.collector, session.config)
        _junit_properties(session.config, self.doc)
        path = session.config.getoption("report_json", None)
        if path:
            model.write_json(self.doc, Path(path))

    @pytest.hookimpl(optionalhook=True)  # pytest-html may be off (-p no:html)
    def pytest_html_report_title(self, report) -> None:
        if self.profile_name:
            report.title = model.title(self.profile_name)

    @pytest.hookimpl(optionalhook=True)  # pytest-html may be off (-p no:html)
    def pytest_html_results_summary(self, prefix: list, summary: list, postfix: list, session) -> None:
        if self.doc is not None:
            prefix.append(html.render(self.doc))

    @pytest.hookimpl(trylast=True)
    def pytest_unconfigure(self, config: pytest.Config) -> None:
        # pytest-html wrote the file during sessionfinish: seal the whole file now.
        if self.doc is not None and self.html_path and self.html_path.is_file():
            verify.seal(self.html_path)  # a file this run did not write (no unsealed seal) is left alone

    def pytest_terminal_summary(self, terminalreporter) -> None:
        if self.doc is None:
            return
        tr = terminalreporter
        tr.section("iommu-audit: go-live verdict")
        for h in self.doc["hosts"]:
            tr.line(f"{h['name']}: {h['verdict']} ({model.counts_text(h['counts'])})")
        tr.line(f"content SHA-256 (profile + facts + results): {self.doc['sha256']}")
        if self.html_path:
            shown = os.path.relpath(self.html_path) if self.html_path.is_absolute() and \
                Path.cwd() in self.html_path.parents else str(self.html_path)
            tr.line(f"report: {shown}  (check it with: iommu-audit verify {shown})")
        if tr.config.getoption("report_json", None):
            tr.line(f"json: {tr.config.getoption('report_json')}")


def _junit_properties(config: pytest.Config, doc: dict) -> None:
    """Suite-level properties in --junitxml: profile, content hash, one verdict per host."""
    from _pytest.junitxml import xml_key
    xml = config.stash.get(xml_key, None)
    if xml is None:
        return
    xml.add_global_property("iommu-audit.profile", doc["run"]["profile"])
    xml.add_global_property("iommu-audit.profile_sha256", doc["run"]["profile_sha256"])
    xml.add_global_property("iommu-audit.sha256", doc["sha256"])
    for h in doc["hosts"]:
        xml.add_global_property(f"iommu-audit.verdict.{h['name']}", h["verdict"])
