"""How the host itself uses a device: the guard shared by checks and fixes."""

from iommu_audit.facts import HostFacts
from iommu_audit.parsers.storage import BlockDevice

SSH_PORT = 22
# Signatures the host may activate on its own (LVM autoactivation, mdadm assembly, crypttab,
# zpool import): worth a note, since a VM's own LVM or ZFS on a passed disk shows them too.
SIGNATURES = {"LVM2_member": "an LVM physical volume", "linux_raid_member": "an md RAID member",
              "crypto_LUKS": "a LUKS volume", "zfs_member": "a ZFS pool member", "ceph_bluestore": "a Ceph OSD",
              "bcache": "a bcache device", "swap": "a swap area"}


def block_usage(facts: HostFacts, devices: list[BlockDevice]) -> tuple[list[str], list[str]]:
    """(uses, notes) of these block devices: mounts, swap, holders, md, fstab/crypttab; signatures."""
    uses, notes = [], []
    names = {bd.name for bd in devices}
    # /proc/mounts may name a device by any link (/dev/mapper/x, /dev/disk/by-uuid/...): resolve each.
    mounted = {facts.kernel_name(m.source): m.target for m in facts.mounts if m.source.startswith("/dev/")}
    for members in facts.btrfs.values():  # /proc/mounts names one device of a multi-device btrfs
        on = [mounted[m] for m in members if m in mounted]
        for m in members if on else ():
            mounted.setdefault(m, f"{on[0]} (btrfs with {', '.join(sorted(members))})")
    zfs_pools = {m.source.split("/", 1)[0] for m in facts.mounts if m.fstype == "zfs"}
    for bd in devices:
        node = f"/dev/{bd.name}"
        if bd.name in mounted:
            uses.append(f"{node} is mounted on {mounted[bd.name]}")
        if node in facts.swaps:
            uses.append(f"{node} is swap")
        if bd.holders:
            uses.append(f"{node} is held by {', '.join(bd.holders)} (LVM PV, dm-crypt, multipath or md)")
        if bd.name in facts.md_members:
            uses.append(f"{node} is a member of {facts.md_members[bd.name]}")
        if bd.fstype == "zfs_member" and bd.label in zfs_pools:
            uses.append(f"{node} is a member of ZFS pool {bd.label}, which this host has imported")
        elif bd.fstype in SIGNATURES:
            notes.append(f"{node} carries {SIGNATURES[bd.fstype]} signature: make sure the host never activates it")
    for bm in facts.boot_mounts:
        if facts.kernel_name(bm.spec) in names:
            what = "mounted" if bm.file.endswith("fstab") else "opened"
            if bm.at_boot:
                uses.append(f"{bm.file} lists {bm.spec} ({bm.target}): the host will have it {what} at boot")
            else:
                notes.append(f"{bm.file} lists {bm.spec} ({bm.target}) as noauto: remove it before go-live")
    return uses, notes


def ssh_addresses(facts: HostFacts) -> set[str]:
    """Local addresses that carry SSH sessions now (all sessions, not only the audit's own)."""
    ssh = facts.ssh_connection.split()
    ports = {SSH_PORT} | ({int(ssh[3])} if len(ssh) > 3 and ssh[3].isdigit() else set())
    found = {ip for ip, port in facts.network.tcp_local if port in ports}
    return found | ({ssh[2]} if len(ssh) > 2 else set())


def pci_usage(facts: HostFacts, addr: str) -> tuple[list[str], list[str]]:
    """(uses, notes) of the block devices and network interfaces the host runs on addr."""
    uses, notes = block_usage(facts, [bd for bd in facts.block.values() if addr in bd.controllers])
    sessions = ssh_addresses(facts)
    net = facts.network
    for ifc, nic in net.nic_address.items():
        if nic != addr:
            continue
        for upper in net.stacked(ifc):
            via = "" if upper == ifc else f" through {upper}"
            if upper in net.default_route:
                uses.append(f"{ifc} carries the default route{via}")
            for ip in sorted(sessions & set(net.addresses.get(upper, []))):
                uses.append(f"{ifc} carries SSH sessions to {ip}{via}")
    return uses, notes


def disk_usage(facts: HostFacts, name: str) -> tuple[list[str], list[str]]:
    """Uses of a whole disk and of its partitions."""
    return block_usage(facts, [bd for bd in facts.block.values() if bd.disk == name])
