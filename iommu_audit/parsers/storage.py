"""Block devices, stable ids, mounts, swap and RAID members."""

from dataclasses import dataclass

import re

from iommu_audit.parsers.sections import Raw
from iommu_audit.parsers.sysfs import pci_address_of


@dataclass(frozen=True)
class BlockDevice:
    name: str  # "sda", "sda1", "nvme0n1"
    disk: str  # the whole disk: itself, or the parent of a partition
    holders: tuple[str, ...]  # dm-*/md* stacked on top (LVM, dm-crypt, multipath, md)
    pci_address: str | None  # controller the disk hangs under
    fstype: str = ""  # udev's ID_FS_TYPE: ext4, zfs_member, LVM2_member, ...
    label: str = ""  # udev's ID_FS_LABEL (for zfs_member: the pool name)
    # Every controller the disk is reached through: an NVMe multipath namespace has one per
    # controller of its subsystem (its own path is virtual), others their pci_address.
    controllers: tuple[str, ...] = ()


_UDEV = re.compile(r"b(\d+:\d+):E:ID_FS_(TYPE|LABEL)=(.*)")


def block_rows(raw: Raw) -> list[list[str]]:
    """Rows of the probe's block section: disk NAME PATH HOLDERS FSTYPE LABEL, part NAME DISK HOLDERS
    FSTYPE LABEL, via NAME CONTROLLER-PATH (before its disk), btrfs UUID NAME."""
    udev: dict[tuple[str, str], str] = {}
    for r in raw.rows:
        m = _UDEV.fullmatch(r[0]) if len(r) == 1 else None
        if m:
            udev.setdefault((m[1], m[2]), m[3])

    def fs(path: str) -> list[str]:
        dev = raw.value(f"{path}/dev")
        return [udev.get((dev, "TYPE"), ""), udev.get((dev, "LABEL"), "")]

    out = []
    for r in raw.rows:
        if r[0] == "via" or (r[0] == "disk" and len(r) > 3) or (r[0] == "part" and len(r) > 4):
            out.append(r)  # saved before the probe batched its reads
        elif r[0] == "disk" and len(r) > 2:
            name, path = r[1], raw.links.get(r[1], "")
            if "/nvme-subsystem/" in path:
                out += [["via", name, t] for p, t in raw.links.items() if p.startswith(f"{name}/../nvme")]
            out.append(["disk", name, path, r[2], *fs(name)])
        elif r[0] == "part" and len(r) > 3:
            out.append(["part", r[1], r[2], r[3], *fs(f"{r[2]}/{r[1]}")])
        elif r[0] == "btrfs":
            out.append(r)
    return out


def block_devices(rows: list[list[str]]) -> dict[str, BlockDevice]:
    out: dict[str, BlockDevice] = {}
    via: dict[str, list[str]] = {}  # multipath namespace -> its controllers' PCI functions
    for r in rows:
        kind, name, where, holders, fstype, label = (r + [""] * 6)[:6]
        hs = tuple(holders.split())
        if kind == "via" and pci_address_of(where):
            via.setdefault(name, []).append(pci_address_of(where))
        elif kind == "disk":
            ctrls = tuple(via.get(name, [])) or ((pci_address_of(where),) if pci_address_of(where) else ())
            out[name] = BlockDevice(name, name, hs, ctrls[0] if ctrls else None, fstype, label, ctrls)
        elif kind == "part":
            parent = out.get(where)
            out[name] = BlockDevice(name, where, hs, parent.pci_address if parent else None, fstype, label,
                                    parent.controllers if parent else ())
    return out


def btrfs_members(rows: list[list[str]]) -> dict[str, list[str]]:
    """{filesystem UUID: member kernel names} from /sys/fs/btrfs/<uuid>/devices/."""
    out: dict[str, list[str]] = {}
    for r in rows:
        if r[0] == "btrfs" and len(r) > 2:
            out.setdefault(r[1], []).append(r[2])
    return out


def disk_link_rows(raw: Raw) -> list[list[str]]:
    """Rows of the probe's disk_links section: /dev/disk/by-*/NAME (or /dev/mapper/NAME) and its target."""
    return [r for r in raw.rows if len(r) > 1] + [[f"/dev/{path}", target] for path, target in raw.links.items()]


def disk_links(rows: list[list[str]]) -> dict[str, str]:
    """{link path: kernel name}: "/dev/disk/by-id/wwn-0x5000c500b1c2d3e4" -> "sda", "/dev/mapper/vg0-root" -> "dm-0"."""
    return {r[0]: r[1].rsplit("/", 1)[-1] for r in rows if len(r) > 1}


_SPEC_DIRS = {"UUID": "by-uuid", "LABEL": "by-label", "PARTUUID": "by-partuuid", "PARTLABEL": "by-partlabel"}


def spec_path(spec: str) -> str:
    """fstab/crypttab device spec as a /dev path: UUID=abc -> /dev/disk/by-uuid/abc."""
    key, eq, value = spec.partition("=")
    if eq and key in _SPEC_DIRS:
        return f"/dev/disk/{_SPEC_DIRS[key]}/{value.strip(chr(34))}"
    return spec


@dataclass(frozen=True)
class BootMount:
    file: str  # /etc/fstab or /etc/crypttab
    spec: str  # as written: UUID=..., /dev/sdb1, ...
    target: str  # mount point, or the crypttab mapping name
    at_boot: bool  # False for noauto entries


def boot_mounts(files: list[tuple[str, str]]) -> list[BootMount]:
    """Entries of /etc/fstab (spec, mount point) and /etc/crypttab (name, device)."""
    out = []
    for path, text in files:
        for line in text.splitlines():
            f = line.split("#", 1)[0].split()
            if len(f) < 2:
                continue
            spec, target = (f[0], f[1]) if path.endswith("fstab") else (f[1], f[0])
            options = f[3].split(",") if len(f) > 3 else []
            out.append(BootMount(path, spec, target, "noauto" not in options))
    return out


@dataclass(frozen=True)
class Mount:
    source: str
    target: str
    fstype: str


def mounts(text: str) -> list[Mount]:
    out = []
    for line in text.splitlines():
        f = line.split()
        if len(f) >= 3:
            out.append(Mount(_unescape(f[0]), _unescape(f[1]), f[2]))
    return out


def _unescape(field: str) -> str:
    # /proc/mounts escapes space, tab, newline and backslash as octal.
    return field.replace("\\040", " ").replace("\\011", "\t").replace("\\012", "\n").replace("\\134", "\\")


def swaps(text: str) -> list[str]:
    """Swap areas from /proc/swaps (header line skipped)."""
    return [line.split()[0] for line in text.splitlines()[1:] if line.split()]


def md_members(text: str) -> dict[str, str]:
    """{member device: md array} from /proc/mdstat."""
    out = {}
    for line in text.splitlines():
        name, sep, rest = line.partition(" : ")
        if not sep or not name.startswith("md"):
            continue
        for word in rest.split():
            if "[" in word:
                out[word.split("[", 1)[0]] = name.strip()
    return out
