"""Whole disks passed to VMs by /dev/disk/by-id."""

import shlex
from dataclasses import dataclass

from iommu_audit.facts import HostFacts
from iommu_audit.profile import Disk
from iommu_audit.rules.vms import libvirt_unusable
from iommu_audit.rules.usage import disk_usage
from iommu_audit.verdict import Verdict, failed, not_applicable, passed



def _kernel_name(facts: HostFacts, disk: Disk) -> str | None:
    return facts.by_id.get(disk.by_id)


def disk_present(facts: HostFacts, disk: Disk) -> Verdict:
    name = _kernel_name(facts, disk)
    if name is None:
        whole = sorted(i for i, n in facts.by_id.items() if n in facts.block and facts.block[n].disk == n)
        return failed(f"no {disk.path}", f"{disk.path} present",
                      "check the disk is connected and visible (controller in HBA mode), or correct the profile's by_id",
                      [f"by-id names of whole disks: {', '.join(whole[:12]) or 'none'}"])
    bd = facts.block.get(name)
    if bd is not None and bd.disk != name:
        return failed(f"{disk.path} is the partition /dev/{name}", "a whole disk",
                      f"pass the whole disk (/dev/disk/by-id name of /dev/{bd.disk}) instead of a partition")
    return passed(f"{disk.path} -> /dev/{name}")


def disk_not_used_by_host(facts: HostFacts, disk: Disk) -> Verdict:
    name = _kernel_name(facts, disk)
    if name is None:
        return not_applicable(f"{disk.path} not found: see disk-present")
    uses, notes = disk_usage(facts, name)
    if uses:
        return failed("; ".join(uses), f"/dev/{name} unused by the host",
                      "unmount it, swapoff, and remove it from LVM/md, /etc/fstab and /etc/crypttab before "
                      "giving it to a VM", notes)
    return passed(f"/dev/{name} and its partitions are not mounted, swap, LVM, md or in fstab/crypttab", notes)


def _disk_routes(facts: HostFacts, name: str) -> list[tuple[str, str]]:
    """(domain, source) for every way a VM reaches the disk: a <disk> (block or file) whose source resolves
    to it or to one of its partitions, or a <hostdev> of the controller that holds it."""
    out = [(dom.name, src) for dom, src, n in facts.disk_sources() if facts.block[n].disk == name]
    ctrl = facts.block[name].pci_address if name in facts.block else None
    if ctrl:
        out += [(dom.name, f"<hostdev> {ctrl} (the controller of /dev/{name})")
                for dom, _ in facts.hostdev_users(ctrl)]
    return out


@dataclass
class Routes:
    """How VMs reach a disk, seen from the VM it belongs to (the audit's rule and --fix's plan both read this)."""
    mine: list[str]  # that VM's <disk type='block'> entries naming the whole disk, in its persistent definition
    live_only: list[str]  # the same, but only hot-plugged (attach-disk --live): gone at the VM's next start
    extra: list[tuple[str, str]]  # (domain, source): every other route in, a second way to the disk

    @property
    def unstable(self) -> list[str]:
        return [src for src in self.mine if not src.startswith(STABLE)]


def disk_routes(facts: HostFacts, vm: str, name: str) -> Routes:
    routes = _disk_routes(facts, name)
    whole = [src for dom, src in routes if dom == vm and facts.kernel_name(src) == name and
             any(d.name == dom and src in d.block_disks for d in facts.domains)]
    live_only = [src for src in whole if any(d.name == vm and src in d.hot_plugged for d in facts.domains)]
    return Routes([src for src in whole if src not in live_only], live_only,
                  [(dom, src) for dom, src in routes if not (dom == vm and src in whole)])


# Names that follow the disk, not what is on it: by-uuid/by-label change when the VM reformats.
STABLE = ("/dev/disk/by-id/", "/dev/disk/by-path/", "/dev/mapper/")


def disk_assigned_to_vm(facts: HostFacts, disk: Disk) -> Verdict:
    name = _kernel_name(facts, disk)
    if name is None:
        return not_applicable(f"{disk.path} not found: see disk-present")
    problem = libvirt_unusable(facts, disk.vm)
    if problem:
        return problem
    r = disk_routes(facts, disk.vm, name)
    mine, live_only, extra, unstable = r.mine, r.live_only, r.extra, r.unstable
    found = []
    if not mine:
        found.append(f"{disk.vm} has {live_only[0]} only in the running VM's live definition (gone at its next start)"
                     if live_only else f"{disk.vm} has no <disk type='block'> for {disk.path}")
    if unstable:
        found.append(f"{disk.vm} uses {', '.join(unstable)}, a name that can change at boot or when the disk is reformatted")
    found += [f"{dom} also reaches /dev/{name} through {src}" for dom, src in extra]
    evidence = [facts.libvirt_note] if facts.libvirt_note else []
    if not found:
        return passed(f"{disk.vm} has <disk type='block'> {mine[0]}, no other VM reaches /dev/{name}", evidence)
    fix = [f"virsh attach-disk {shlex.quote(disk.vm)} {disk.path} <target, e.g. vdb> --config" if not mine or unstable else ""]
    fix += [f"virsh detach-device {shlex.quote(dom)} <hostdev-{src.split()[1]}.xml> --config" if src.startswith("<hostdev>")
            else f"virsh detach-disk {shlex.quote(dom)} {shlex.quote(src)} --config" for dom, src in extra]
    return failed("; ".join(found), f"{disk.path} in {disk.vm} only, by its stable id, and by no other route",
                  "; ".join(f for f in fix if f), evidence)
