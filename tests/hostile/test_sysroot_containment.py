"""A --sysroot copy whose links point outside it: nothing outside the copy is read.

Support engineers audit customer tarballs. Every link is resolved the way the host would see
it (an absolute target is relative to the copy's root, ".." stops at it), so an outside file
never reaches the output, the HTML report or --save-facts, and a FIFO outside is never opened.
"""

import errno
import os
import threading
import time

from tests.conftest import PROJECT
from tests.e2e.audit_run import audit

PROFILE = PROJECT / "profiles" / "dl360-gen9.yaml"
SECRET = "AUDITOR-SECRET-7f3a"


class FifoWatch:
    """A FIFO outside the copy: opening it for reading is what the test must never see."""

    def __init__(self, path):
        self.path, self.opened, self._stop = path, False, False
        os.mkfifo(path)
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()

    def _watch(self):
        while not self._stop:
            try:  # succeeds only while a reader has the FIFO open (or waits in open)
                fd = os.open(self.path, os.O_WRONLY | os.O_NONBLOCK)
            except OSError as exc:
                assert exc.errno == errno.ENXIO
                time.sleep(0.01)
                continue
            self.opened = True
            os.close(fd)  # lets the reader go on (it reads EOF)

    def stop(self):
        self._stop = True
        self._thread.join()


def test_links_out_of_the_copy_read_nothing_outside_it(host, tmp_path):
    outside = tmp_path / "auditing-machine"
    (outside / "holders" / SECRET).mkdir(parents=True)
    (outside / "cmdline").write_text(f"BOOT_IMAGE=/vmlinuz intel_iommu=off {SECRET}\n")
    (outside / "fake.conf").write_text(f"blacklist vfio_pci # {SECRET}\n")
    fifo = FifoWatch(outside / "fifo")
    # An absolute link the host resolves inside its own root: /proc/cmdline of the copy's
    # <outside>/cmdline, which holds the host's real (good) command line.
    good = host.read("proc/cmdline")
    host.write(f"{outside}/cmdline".lstrip("/"), good)
    host.remove("proc/cmdline")
    os.symlink(outside / "cmdline", host.path("proc/cmdline"))
    # Absolute and climbing links to files, a directory and a FIFO of the auditing machine.
    os.symlink(outside / "fake.conf", host.path("etc/modprobe.d/evil.conf"))
    os.symlink("../../../auditing-machine/fake.conf", host.path("etc/modprobe.d/climb.conf"))
    os.symlink("../" * 12 + str(outside / "fake.conf").lstrip("/"), host.path("etc/modprobe.d/deep.conf"))
    os.symlink(outside, host.path("sys/block/sdz"))
    os.symlink("../../../auditing-machine/fifo", host.path("etc/modprobe.d/fifo.conf"))
    os.symlink(outside / "fifo", host.path("etc/driverctl.d/pci-0000:00:1f.0"))
    facts, report = tmp_path / "facts.json", tmp_path / "report.html"
    try:
        run = audit(tmp_path, PROFILE, f"--sysroot={host.root}", f"--save-facts={facts}", f"--html={report}",
                    "--self-contained-html")
    finally:
        fifo.stop()
    assert not fifo.opened, "a FIFO outside the copy was opened"
    for where, text in (("output", run.output), ("--save-facts", facts.read_text()), ("report", report.read_text())):
        assert SECRET not in text, f"a file outside the copy reached the {where}"
    # The copy's own files, links included, are read as the host reads them: the compliant verdict.
    assert run.rc == 0 and not run.failed(), run.output
    assert run.outcome("test_cmdline_iommu[dl360-gen9-01]") == "passed"
    saved = facts.read_text()
    assert "intel_iommu=on iommu=pt" in saved and f"root={host.root}" in saved
