"""The kernel log read as text whatever it holds, said when unreadable, parsed in linear time."""

import time

from tests.conftest import PROJECT
from tests.e2e.audit_run import audit

PROFILE = PROJECT / "profiles" / "dl360-gen9.yaml"
BLOCKERS = "test_no_known_blockers[dl360-gen9-01]"
RMRR = ("[    2.101000] DMAR: [Firmware Bug]: No firmware reserved region can cover this RMRR "
        "[0x000000007a000000-0x000000007a7fffff], contact BIOS vendor for fixes\n")
UNSAFE = "[    2.200000] vfio_iommu_type1: No interrupt remapping support.  Use the module param\n"


def test_one_nul_byte_does_not_hide_the_blockers(host, tmp_path):
    # A NUL early in the log made grep print "binary file matches" instead of the lines.
    raw = host.path("dmesg").read_bytes()
    first, rest = raw.split(b"\n", 1)
    host.path("dmesg").write_bytes(first + b"\n[    0.000001] garbled \x00 console line\n" + rest + UNSAFE.encode())
    run = audit(tmp_path, PROFILE, f"--sysroot={host.root}")
    assert run.rc == 1 and run.outcome(BLOCKERS) == "failed", run.output
    assert "No interrupt remapping support" in run.messages[BLOCKERS]


def test_a_log_that_exists_but_cannot_be_read_is_named(host, tmp_path):
    host.remove("dmesg")
    host.path("dmesg").mkdir()  # not a file: as unreadable as a log without permission
    run = audit(tmp_path, PROFILE, f"--sysroot={host.root}")
    assert run.rc == 1 and run.outcome(BLOCKERS) == "failed"
    assert "the kernel log could not be read (/dmesg exists but is not a readable file)" in run.messages[BLOCKERS]


def test_a_huge_log_line_is_parsed_quickly_and_later_lines_still_count(host, tmp_path):
    # 165 KB of one line: the ".*" blocker patterns took ~55 s on it before lines were capped.
    host.append("dmesg", "[    1.000000] iommu: " + "[Firmware Bug] " * 11_000 + "\n" + UNSAFE)
    start = time.monotonic()
    run = audit(tmp_path, PROFILE, f"--sysroot={host.root}")
    assert time.monotonic() - start < 30
    assert run.rc == 1 and run.outcome(BLOCKERS) == "failed"
    assert "No interrupt remapping support" in run.messages[BLOCKERS]
