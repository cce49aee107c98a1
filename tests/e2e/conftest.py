"""Real kernels in QEMU guests and a real libvirtd, driven like a user drives the audit."""

from tests.e2e.harness.fixtures import boot_guest, guest_image, libvirtd, libvirtd_server  # noqa: F401
