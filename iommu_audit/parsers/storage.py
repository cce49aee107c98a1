"""Block devices, stable ids, mounts, swap and RAID members."""

from dataclasses import dataclass

from iommu_audit.parsers.sysfs import pci_address_of


@dataclass(frozen=True)
class BlockDevice:
    name: str  # "sda", "sda1", "nvme0n1"
    disk: str  # the whole disk: itself, or the parent of a partition
    holders: tuple[str, ...]  # dm-*/md* stacked on top (LVM, dm-crypt, multipath, md)
    pci_address: str | None  # controller the disk hangs under


def block_devices(rows: list[list[str]]) -> dict[str, BlockDevice]:
    out: dict[str, BlockDevice] = {}
    for r in rows:
        r = (r + [""] * 4)[:4]
        kind, name, where, holders = r
        hs = tuple(holders.split())
        if kind == "disk":
            out[name] = BlockDevice(name, name, hs, pci_address_of(where))
        elif kind == "part":
            parent = out.get(where)
            out[name] = BlockDevice(name, where, hs, parent.pci_address if parent else None)
    return out


def by_id(rows: list[list[str]]) -> dict[str, str]:
    """{by-id name: kernel name} ("ata-MB2000GCWDA_Z1X4ABCD" -> "sdb")."""
    return {r[0]: r[1].rsplit("/", 1)[-1] for r in rows if len(r) > 1}


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
