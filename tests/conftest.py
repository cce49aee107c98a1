"""Shared fixtures of the project's own tests."""

from pathlib import Path

import pytest

from iommu_audit import profile as profiles
from tests.sysroot import HostCopy

PROJECT = Path(__file__).resolve().parent.parent


@pytest.fixture
def host(tmp_path) -> HostCopy:
    """A private copy of the compliant DL360 Gen9 sample host."""
    return HostCopy(tmp_path / "dl360-gen9-01")


@pytest.fixture(scope="session")
def dl360() -> profiles.Profile:
    return profiles.load("dl360-gen9", PROJECT / "profiles")
