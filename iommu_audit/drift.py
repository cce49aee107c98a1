"""Drift: a host now against itself at go-live (--baseline, the --save-facts file of that run).

Only what the profile cares about is compared: each profiled device's address, slot, identity,
driver and IOMMU group members; the VMs that hold it and the definition of its VM; each disk's
kernel name, controller and VMs; the kernel command line, kernel release and firmware (BIOS).
Pure functions like rules/: (baseline facts, facts now, subject) -> Verdict with before -> after.
"""

import json
from dataclasses import dataclass
from pathlib import Path

import pytest

from iommu_audit import gather
from iommu_audit.facts import HostFacts
from iommu_audit.profile import Device, Disk
from iommu_audit.rules.devices import in_slot, locate
from iommu_audit.verdict import Verdict, failed, passed

FIX = "if the change was intended, record a new baseline (--save-facts) after the change is reviewed; else undo it"


def add_options(group) -> None:
    group.addoption("--baseline", metavar="FACTS.json",
                    help="compare each host with itself at go-live: the --save-facts file of that run (no-drift)")


@dataclass
class Baseline:
    path: str
    hosts: dict[str, tuple[HostFacts, str]]  # name -> (facts at go-live, when they were gathered)

    def of(self, name: str) -> tuple[HostFacts, str] | None:
        return self.hosts.get(name)


BASELINE = pytest.StashKey[Baseline]()


def load(path: str) -> Baseline:
    """The go-live facts of every host in a --save-facts file; a bad file is a usage error (one line)."""
    try:
        targets = gather.load(path)
        when = {h.get("name"): h.get("gathered_at") or "?" for h in json.loads(Path(path).read_text())["hosts"]}
        return Baseline(path, {t.name: (gather.parse(gather.gather(t)), when.get(t.name, "?")) for t in targets})
    except gather.GatherError as exc:
        raise pytest.UsageError(str(exc).replace("--facts", "--baseline", 1)) from None


def configure(config: pytest.Config) -> None:
    path = config.getoption("baseline", None)
    if path:
        config.stash[BASELINE] = load(path)
    else:
        config.pluginmanager.register(_WithoutBaseline(), "iommu-audit-no-baseline")


def uncompared(config: pytest.Config, names: list[str]) -> list[str]:
    """Hosts of this run that --baseline does not hold: never compared, so the run cannot pass,
    even when -k deselects test_no_drift (the plugin decides this from the targets, not the reports)."""
    b = config.stash.get(BASELINE, None)
    return [] if b is None else [n for n in names if b.of(n) is None]


class _WithoutBaseline:
    """No --baseline: the drift checks are not collected at all (nothing to compare with)."""

    @staticmethod
    def pytest_ignore_collect(collection_path: Path):
        return True if collection_path.name == "test_drift.py" and collection_path.parent.name == "checks" else None


def _diff(what: str, before, after) -> str | None:
    return None if before == after else f"{what}: {_show(before)} -> {_show(after)}"


def _show(value) -> str:
    if value in (None, "", [], ()):
        return "(none)"
    return ", ".join(value) if isinstance(value, (list, tuple)) else str(value)


def _verdict(changes: list[str], scope: str, at: str) -> Verdict:
    changes = [c for c in changes if c]
    if changes:
        return failed("; ".join(changes), f"{scope} as at go-live ({at})", FIX, changes)
    return passed(f"{scope} unchanged since go-live ({at})")


def missing_baseline(name: str, path: str, known: list[str]) -> Verdict:
    return failed(f"no baseline for {name} in {path} (it holds: {', '.join(known) or 'no host'})",
                  f"{name} recorded in the baseline", "audit the host at go-live with --save-facts and pass that "
                  "file as --baseline (host names must match, e.g. the same --hosts spelling)")


def host_drift(before: HostFacts, now: HostFacts, at: str) -> Verdict:
    bios = ("sys_vendor", "product_name", "bios_version", "bios_date")
    was, is_ = getattr(before, "system", {}) or {}, getattr(now, "system", {}) or {}
    changes = [_diff("kernel command line", before.cmdline, now.cmdline),
               _diff("kernel", before.kernel, now.kernel)]
    # Firmware is compared where both runs could read it (older baselines predate the DMI facts).
    changes += [_diff(k.replace("_", " "), was.get(k), is_.get(k)) for k in bios if was.get(k) and is_.get(k)]
    return _verdict(changes, "command line, kernel and firmware", at)


def _slot_of(facts: HostFacts, addr: str | None) -> str | None:
    return next((s for s in sorted(facts.slots) if addr and in_slot(facts, addr, s)), None)


def _vm_holders(facts: HostFacts, addr: str | None) -> list[str]:
    return sorted(f"{d.name}{' (managed)' if hd.managed else ''}" for d, hd in facts.hostdev_users(addr)) if addr else []


def _definition(facts: HostFacts, vm: str | None) -> str | None:
    """What a VM definition passes through, in a form two runs can compare."""
    dom = next((d for d in facts.domains if d.name == vm), None)
    if dom is None:
        return None
    devs = [f"{a[0]:04x}:{a[1]:02x}:{a[2]:02x}.{a[3]:x}{'' if hd.managed else ' (unmanaged)'}"
            for hd in dom.hostdevs for a in [hd.address]]
    return "; ".join(sorted(devs) + sorted(dom.block_disks)) or "nothing passed through"


def device_drift(before: HostFacts, now: HostFacts, device: Device, at: str) -> Verdict:
    was, is_ = locate(before, device), locate(now, device)
    if was is None:
        return failed(f"{device.name} was not found at go-live either", "the device in the baseline",
                      "record the baseline after the device was installed", [])
    old = before.pci[was]
    new = now.pci.get(is_) if is_ else None
    group = lambda f, d: sorted(m for m in f.groups.get(d.iommu_group or "", []) if m != d.address) if d else None
    serial = lambda f, a: f.nvme[a].serial if a in f.nvme and f.nvme[a].serial else None
    changes = [_diff("address", was, is_), _diff("slot", _slot_of(before, was), _slot_of(now, is_))]
    if new is not None:
        changes += [_diff("vendor:device", old.id, new.id), _diff("driver", old.driver, new.driver),
                    _diff("IOMMU group members", group(before, old), group(now, new))]
        if serial(before, was) and serial(now, is_):  # readable only while the nvme driver holds the drive
            changes.append(_diff("serial", serial(before, was), serial(now, is_)))
    changes += [_diff("VMs holding it", _vm_holders(before, was), _vm_holders(now, is_))]
    if device.vm:
        changes.append(_diff(f"definition of {device.vm}", _definition(before, device.vm), _definition(now, device.vm)))
    return _verdict(changes, device.name, at)


def _disk_holders(facts: HostFacts, name: str | None) -> list[str]:
    return sorted(d.name for d in facts.domains for p in d.block_disks if name and facts.kernel_name(p) == name)


def disk_drift(before: HostFacts, now: HostFacts, disk: Disk, at: str) -> Verdict:
    was, is_ = before.by_id.get(disk.by_id), now.by_id.get(disk.by_id)
    if was is None:
        return failed(f"{disk.path} was not present at go-live either", "the disk in the baseline",
                      "record the baseline after the disk was installed", [])
    ctrl = lambda f, n: f.block[n].pci_address if n in f.block else None
    changes = [_diff(f"{disk.by_id} is", f"/dev/{was}", f"/dev/{is_}" if is_ else None),
               _diff("controller", ctrl(before, was), ctrl(now, is_)),
               _diff("VMs holding it", _disk_holders(before, was), _disk_holders(now, is_)),
               _diff(f"definition of {disk.vm}", _definition(before, disk.vm), _definition(now, disk.vm))]
    return _verdict(changes, disk.name, at)

