"""Hangs and endless files: a host that does not answer fails facts-gathered, naming it, in time.

A hanging virsh (or SSH session), a FIFO or /dev/zero in place of a file must neither hang the
audit nor eat memory: one probe timeout per host (--probe-timeout), regular files only, capped.
"""

import os
import shutil
import time

import pytest

from tests.conftest import PROJECT
from tests.e2e.audit_run import audit

PROFILE = PROJECT / "profiles" / "dl360-gen9.yaml"


def fake_tools(tmp_path, *, with_timeout: bool):
    """A PATH whose dmesg never answers; without `timeout` only the transport's own wait is left."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "dmesg").write_text("#!/bin/sh\nexec sleep 40\n")
    (bin_dir / "dmesg").chmod(0o755)
    if with_timeout:
        return f"{bin_dir}:{os.environ['PATH']}"
    bb = shutil.which("busybox")
    if not bb:
        pytest.skip("needs busybox for a PATH without timeout")
    for applet in ("sh", "base64", "gzip", "printf", "cat", "grep", "sed", "ls", "readlink", "tr", "head", "sort",
                   "id", "cut", "sleep", "journalctl", "dmesg"):
        if not (bin_dir / applet).exists():
            (bin_dir / applet).symlink_to(bb)
    return str(bin_dir)


@pytest.mark.parametrize("with_timeout", [True], ids=["host-timeout"])
def test_a_hanging_tool_fails_facts_gathered_naming_the_host(tmp_path, with_timeout):
    path = fake_tools(tmp_path, with_timeout=with_timeout)
    start = time.monotonic()
    run = audit(tmp_path, PROFILE, "--hosts=local://", "--probe-timeout=3", env={"PATH": path})
    took = time.monotonic() - start
    assert run.rc == 1, run.output
    assert run.outcome("test_facts_gathered[local]") == "failed"
    assert "local://: the probe did not finish within 3 s (--probe-timeout)" in run.messages["test_facts_gathered[local]"]
    assert not any(o == "passed" for o in run.outcomes.values()), run.outcomes
    assert took < (30 if with_timeout else 45), f"took {took:.0f} s"


def test_fifos_and_endless_files_in_a_copy_are_not_read(host, tmp_path):
    host.remove("dmesg")
    os.mkfifo(host.path("dmesg"))  # nobody ever writes: reading it would hang forever
    host.remove("proc/mdstat")
    os.symlink("/dev/zero", host.path("proc/mdstat"))  # the copy's own /dev/zero: not there
    start = time.monotonic()
    run = audit(tmp_path, PROFILE, f"--sysroot={host.root}", "--probe-timeout=60")
    assert time.monotonic() - start < 60
    # No kernel log to search: the blockers check cannot pass; everything else reads as before.
    assert run.rc == 1 and run.failed() == {"test_no_known_blockers[dl360-gen9-01]"}, run.output
    assert "the kernel log could not be read" in run.messages["test_no_known_blockers[dl360-gen9-01]"]


def test_bad_probe_timeout_is_a_usage_error(host, tmp_path):
    run = audit(tmp_path, PROFILE, f"--sysroot={host.root}", "--probe-timeout=0")
    assert run.rc == 4 and "--probe-timeout 0: give a number of seconds above 0" in run.output
    assert "Traceback" not in run.output
