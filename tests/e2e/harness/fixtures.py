"""Session-scoped pytest fixtures for the real-kernel e2e tests.

Use from a conftest.py:

    from tests.e2e.harness.fixtures import *  # noqa: F401,F403

Fixtures: ``guest_image``, ``boot_guest`` (factory), ``libvirtd_server``
(Libvirtd object with helpers) and ``libvirtd`` (its URI string). Under
pytest-xdist each worker has its own session, so its own guests and libvirtd.
When QEMU/libvirt/tools are missing the fixtures skip locally but fail
under CI=true, so a CI machine without the harness cannot pass silently.
"""
from __future__ import annotations

import os
from typing import Callable, Iterator

import pytest

from . import guest_image as _gi
from . import libvirtd as _lv
from . import qemu as _qemu

__all__ = ["guest_image", "boot_guest", "libvirtd_server", "libvirtd", "skip_or_fail"]


def skip_or_fail(reason: str) -> None:
    """pytest.skip locally; pytest.fail when CI=true (the harness must run in CI)."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(reason, pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def guest_image() -> _gi.GuestImage:
    """The cached kernel + initramfs (built on first use, ~10 s)."""
    reason = _gi.unavailable_reason()
    if reason:
        skip_or_fail(reason)
    try:
        return _gi.build()
    except Exception as exc:  # apt unreachable, package missing, ...
        skip_or_fail(f"cannot build the e2e guest image: {exc}")
        raise


@pytest.fixture(scope="session")
def boot_guest(guest_image) -> Iterator[Callable[..., _qemu.Guest]]:
    """Factory: ``boot_guest(name=None, *, fresh=False, **topology) -> Guest``.

    topology = qemu.Guest keyword arguments (iommu, cmdline_extra, nvme,
    bridge_nvme, mounted_nvme, ...). Guests are cached per (name, topology)
    for the session, so tests that change guest state (rebinding drivers,
    writing /etc/modprobe.d) must undo it, or pass ``fresh=True`` for a
    guest of their own. All guests are stopped at the end of the session.
    """
    cached: dict[tuple, _qemu.Guest] = {}
    everyone: list[_qemu.Guest] = []

    def _boot(name: str | None = None, *, fresh: bool = False, **topology) -> _qemu.Guest:
        key = (name, tuple(sorted(topology.items())))
        if not fresh and key in cached:
            return cached[key]
        g = _qemu.Guest(guest_image, name or f"e2e-guest-{len(everyone) + 1}", **topology)
        everyone.append(g)
        g.__enter__()
        if not fresh:
            cached[key] = g
        return g

    yield _boot
    for g in everyone:
        g.close()


@pytest.fixture(scope="session")
def libvirtd_server() -> Iterator[_lv.Libvirtd]:
    """A private, real libvirtd (QEMU driver); see libvirtd.py."""
    reason = _lv.unavailable_reason()
    if reason:
        skip_or_fail(reason)
    with _lv.private_libvirtd() as server:
        yield server


@pytest.fixture(scope="session")
def libvirtd(libvirtd_server) -> str:
    """URI of the private libvirtd, e.g. for LIBVIRT_DEFAULT_URI."""
    return libvirtd_server.uri
