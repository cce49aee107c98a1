"""How the host itself uses a device: the guard shared by checks and fixes."""

from iommu_audit.facts import HostFacts
from iommu_audit.parsers.storage import BlockDevice


def block_usage(facts: HostFacts, devices: list[BlockDevice]) -> list[str]:
    """Mounts, swap, holders (LVM, dm-crypt, multipath, md) and md membership of these block devices."""
    uses = []
    mounted = {m.source: m.target for m in facts.mounts}
    for bd in devices:
        node = f"/dev/{bd.name}"
        if node in mounted:
            uses.append(f"{node} is mounted on {mounted[node]}")
        if node in facts.swaps:
            uses.append(f"{node} is swap")
        if bd.holders:
            uses.append(f"{node} is held by {', '.join(bd.holders)} (LVM PV, dm-crypt, multipath or md)")
        if bd.name in facts.md_members:
            uses.append(f"{node} is a member of {facts.md_members[bd.name]}")
    return uses


def pci_usage(facts: HostFacts, addr: str) -> list[str]:
    """Block devices and network interfaces the host runs on the PCI function at addr."""
    uses = block_usage(facts, [bd for bd in facts.block.values() if bd.pci_address == addr])
    ssh = facts.ssh_connection.split()
    ssh_ip = ssh[2] if len(ssh) > 2 else ""
    for ifc, nic in facts.network.nic_address.items():
        if nic != addr:
            continue
        if ifc in facts.network.default_route:
            uses.append(f"{ifc} carries the default route")
        if ssh_ip and ssh_ip in facts.network.addresses.get(ifc, []):
            uses.append(f"{ifc} carries this SSH session ({ssh_ip})")
    return uses


def disk_usage(facts: HostFacts, name: str) -> list[str]:
    """Uses of a whole disk and of its partitions."""
    return block_usage(facts, [bd for bd in facts.block.values() if bd.disk == name])
