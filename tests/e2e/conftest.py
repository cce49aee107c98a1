"""Real kernels in QEMU guests and a real libvirtd, driven like a user drives the audit."""

from pathlib import Path

import pytest

from tests.e2e.harness.fixtures import boot_guest, guest_image, libvirtd, libvirtd_server  # noqa: F401

# With `pytest tests/e2e -n 2` (scripts/test.sh) a worker runs a whole file at a time (or files that share
# a guest, SAME_WORKER): module-scoped guests are booted once, in one worker. Files go out in this order,
# slowest first, so that both workers finish together; files not listed go last. Each worker has its own
# session: its own guests and libvirtd.
SLOWEST_FIRST = ["test_reboot.py", "test_fix.py", "test_intel.py", "test_readme.py", "test_fleet.py",
                 "test_harness_smoke.py", "test_false_greens.py", "test_amd_and_bridge.py",
                 "test_rules_hostile.py", "test_libvirt.py", "test_grub_mkconfig.py", "test_kernel_install.py"]
# test_readme's guest has test_intel's topology: on one worker, one boot serves both.
SAME_WORKER = {"test_readme.py": "test_intel.py"}
E2E = Path(__file__).resolve().parent


def pytest_collection_modifyitems(items) -> None:
    def rank(item) -> int:
        name = item.path.name
        return SLOWEST_FIRST.index(name) if name in SLOWEST_FIRST else len(SLOWEST_FIRST)

    e2e = [i for i in items if i.path.is_relative_to(E2E)]
    items[:] = [i for i in items if i not in e2e] + sorted(e2e, key=rank)  # sorted() keeps each file's order


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    # Not --dist loadgroup: with pytest 9 its xdist_group marks no longer reach the scheduler (xdist 3.8
    # renames item._nodeid, which pytest 9 does not read), so every test was scheduled on its own.
    from xdist.scheduler import LoadScopeScheduling

    class ByFile(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            name = Path(nodeid.split("::")[0]).name
            return SAME_WORKER.get(name, name)

    config.option.loadscopereorder = False  # keep SLOWEST_FIRST (xdist >= 3.8 would sort by test count)
    return ByFile(config, log)


# Slow e2e runs explain themselves: the last lines say which accelerator the guests had, and why.
# Under xdist the guests boot in the workers, which hand their line to the controller.
_WORKER_ACCEL_LINES: set[str] = set()


def pytest_sessionfinish(session) -> None:
    if hasattr(session.config, "workerinput"):
        from tests.e2e.harness.qemu import accel_line
        session.config.workeroutput["accel_line"] = accel_line()


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node, error) -> None:
    _WORKER_ACCEL_LINES.add(getattr(node, "workeroutput", {}).get("accel_line", ""))


def pytest_terminal_summary(terminalreporter) -> None:
    from tests.e2e.harness.qemu import accel_line
    for line in sorted({accel_line(), *_WORKER_ACCEL_LINES} - {""}):
        terminalreporter.write_line(line)
