"""Copies of the bundled DL360 Gen9 sample host, changed the way real hosts differ.

Tests start from the compliant sample (a sysfs-shaped tree, see README "Sysroot
layout") and break one thing at a time, then read it with the real probe.
"""

import os
import shutil
import subprocess
from pathlib import Path

from iommu_audit import gather
from iommu_audit.facts import HostFacts

SAMPLE = Path(__file__).resolve().parent.parent / "samples" / "dl360-gen9-01"


class HostCopy:
    def __init__(self, root: Path):
        self.root = root
        shutil.copytree(SAMPLE, root, symlinks=True)

    def path(self, rel: str) -> Path:
        return self.root / rel.lstrip("/")

    def read(self, rel: str) -> str:
        return self.path(rel).read_text()

    def write(self, rel: str, text: str) -> "HostCopy":
        p = self.path(rel)
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
        return self

    def append(self, rel: str, text: str) -> "HostCopy":
        return self.write(rel, self.read(rel) + text)

    def replace(self, rel: str, old: str, new: str) -> "HostCopy":
        text = self.read(rel)
        assert old in text, f"{old!r} not in {rel}"
        return self.write(rel, text.replace(old, new))

    def remove(self, rel: str) -> "HostCopy":
        p = self.path(rel)
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p)
        else:
            p.unlink()
        return self

    def device_dir(self, addr: str) -> Path:
        return (self.root / "sys/bus/pci/devices" / addr).resolve()

    def bind(self, addr: str, driver: str | None) -> "HostCopy":
        """Point the device's driver link at another driver (None: unbound), as a rebind would."""
        link = self.device_dir(addr) / "driver"
        if link.is_symlink():
            link.unlink()
        if driver:
            target = self.root / "sys/bus/pci/drivers" / driver
            target.mkdir(parents=True, exist_ok=True)
            os.symlink(os.path.relpath(target, link.parent), link)
        return self

    def move_to_group(self, addr: str, group: str) -> "HostCopy":
        """Put a device into another IOMMU group (as a topology without ACS would)."""
        dev = self.device_dir(addr)
        old = os.readlink(dev / "iommu_group").rsplit("/", 1)[-1]
        (self.root / f"sys/kernel/iommu_groups/{old}/devices/{addr}").unlink()
        new = self.root / f"sys/kernel/iommu_groups/{group}/devices"
        new.mkdir(parents=True, exist_ok=True)
        os.symlink(os.path.relpath(dev, new), new / addr)
        (dev / "iommu_group").unlink()
        os.symlink(os.path.relpath(new.parent, dev), dev / "iommu_group")
        return self

    def probe_output(self) -> str:
        """The probe's text with the default section marker, as a hand-written facts file would hold it."""
        return subprocess.run(["sh", "-c", gather.PROBE, "probe", str(self.root)], capture_output=True, text=True,
                              errors="replace", check=True).stdout

    def gathered(self) -> gather.Gathered:
        return gather.gather(gather.Target(self.root.name, f"sysroot:{self.root}", sysroot=str(self.root)))

    def facts(self) -> HostFacts:
        return gather.parse(self.gathered())
