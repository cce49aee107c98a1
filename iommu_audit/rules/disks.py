"""Whole disks passed to VMs by /dev/disk/by-id."""

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


def _disk_users(facts: HostFacts, name: str) -> list[tuple[str, str]]:
    """(domain, source) for every <disk type='block'> whose source resolves to the kernel device name."""
    return [(dom.name, src) for dom in facts.domains for src in dom.block_disks if facts.kernel_name(src) == name]


# Names that follow the disk, not what is on it: by-uuid/by-label change when the VM reformats.
STABLE = ("/dev/disk/by-id/", "/dev/disk/by-path/", "/dev/mapper/")


def disk_assigned_to_vm(facts: HostFacts, disk: Disk) -> Verdict:
    name = _kernel_name(facts, disk)
    if name is None:
        return not_applicable(f"{disk.path} not found: see disk-present")
    problem = libvirt_unusable(facts, disk.vm)
    if problem:
        return problem
    users = _disk_users(facts, name)
    mine = [src for dom, src in users if dom == disk.vm]
    others = sorted({dom for dom, _ in users if dom != disk.vm})
    unstable = [src for src in mine if not src.startswith(STABLE)]
    found = []
    if not mine:
        found.append(f"{disk.vm} has no <disk type='block'> for {disk.path}")
    if unstable:
        found.append(f"{disk.vm} uses {', '.join(unstable)}, a name that can change at boot or when the disk is reformatted")
    if others:
        found.append(f"/dev/{name} is also attached to {', '.join(others)}")
    if not found:
        return passed(f"{disk.vm} has <disk type='block'> {mine[0]}, no other VM has /dev/{name}")
    fix = [f"virsh attach-disk {disk.vm} {disk.path} <target, e.g. vdb> --config" if not mine or unstable else ""]
    fix += [f"virsh detach-disk {o} <target> --config" for o in others]
    return failed("; ".join(found), f"{disk.path} in {disk.vm} only, by its stable id", "; ".join(f for f in fix if f))
