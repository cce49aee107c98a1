"""Real kernels in QEMU guests and a real libvirtd, driven like a user drives the audit."""

from tests.e2e.harness.fixtures import boot_guest, guest_image, libvirtd, libvirtd_server  # noqa: F401


def pytest_terminal_summary(terminalreporter) -> None:
    from tests.e2e.harness.qemu import accel_line
    if accel_line():  # slow e2e runs explain themselves
        terminalreporter.write_line(accel_line())
