"""The probe's platform section: reserved regions, NUMA placement, vfio unsafe-mode parameters.

Rows (tab-separated):
  resv GROUP                      the group has a reserved_regions file (kernel 4.11+)
  resv GROUP "START END TYPE"     one line of it, as iommu_group_show_resv_regions() prints it:
                                  "0x%016llx 0x%016llx %s\\n", TYPE one of direct, direct-relaxable
                                  (5.3+), reserved, msi
  numa ADDRESS NODE               /sys/bus/pci/devices/ADDRESS/numa_node (-1: firmware gave none)
  node N CPULIST                  /sys/devices/system/node/nodeN/cpulist
                                  (the probe sends "numa ADDRESS" and "node N" rows and the files'
                                  first lines apart: platform_rows joins them)
  param MODULE/parameters/NAME V  a live module parameter (Y/N)
  missing PATH                    an offline copy lacks this directory

>>> p = platform([["resv", "7"], ["resv", "7", "0x0000000079174000 0x0000000079176fff direct"]])
>>> p.reserved["7"][0].type, hex(p.reserved["7"][0].start)
('direct', '0x79174000')
>>> cpus("0-2,8")
{0, 1, 2, 8}
"""

from dataclasses import dataclass, field

from iommu_audit.parsers.sections import Raw


@dataclass(frozen=True)
class Region:
    start: int
    end: int
    type: str  # direct | direct-relaxable | reserved | msi

    def __str__(self) -> str:
        return f"[{self.start:#x}-{self.end:#x}] {self.type}"


@dataclass(frozen=True)
class Platform:
    reserved: dict[str, list[Region]] = field(default_factory=dict)  # group -> regions; absent: no file
    numa_node: dict[str, int] = field(default_factory=dict)  # PCI address -> node (-1: none)
    node_cpus: dict[int, str] = field(default_factory=dict)  # node -> cpulist text ("0-9,20-29")
    params: dict[str, str] = field(default_factory=dict)  # "vfio/parameters/enable_unsafe_noiommu_mode" -> "N"
    missing: tuple[str, ...] = ()  # directories an offline copy lacks ("sys/class/iommu")

    def node_of_cpu(self, cpu: int) -> int | None:
        for node, text in self.node_cpus.items():
            if cpu in cpus(text):
                return node
        return None


def platform_rows(raw: Raw) -> list[list[str]]:
    """The section's rows, numa and node rows joined with their files' first lines."""
    files = {"numa": "{}/numa_node", "node": "node{}/cpulist"}
    return [[r[0], r[1], raw.value(files[r[0]].format(r[1]))] if r[0] in files and len(r) == 2 else r
            for r in raw.rows]


def platform(rows: list[list[str]]) -> Platform:
    out = Platform()
    missing = []
    for r in rows:
        kind, args = r[0], r[1:]
        if kind == "resv" and args:
            regions = out.reserved.setdefault(args[0], [])
            if len(args) > 1:
                region = _region(args[1])
                if region:
                    regions.append(region)
        elif kind == "numa" and len(args) > 1:
            out.numa_node[args[0]] = _int(args[1], -1)
        elif kind == "node" and len(args) > 1 and args[0].isdigit():
            out.node_cpus[int(args[0])] = args[1].strip()
        elif kind == "param" and len(args) > 1:
            out.params[args[0]] = args[1].strip()
        elif kind == "missing" and args:
            missing.append(args[0])
    return Platform(out.reserved, out.numa_node, out.node_cpus, out.params, tuple(missing))


def _region(line: str) -> Region | None:
    parts = line.split()
    if len(parts) != 3:
        return None
    try:
        return Region(int(parts[0], 16), int(parts[1], 16), parts[2])
    except ValueError:
        return None


def _int(text: str, default: int) -> int:
    try:
        return int(text.strip())
    except ValueError:
        return default


def cpus(text: str) -> set[int]:
    """CPU numbers of a kernel/libvirt CPU list: "0-9,20-29", "0-3,^2" (libvirt exclusion), "".

    Raises ValueError on text that is not a CPU list.
    """
    on: set[int] = set()
    off: set[int] = set()
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        target = off if part.startswith("^") else on
        lo, _, hi = part.lstrip("^").partition("-")
        target.update(range(int(lo), int(hi or lo) + 1))
    return on - off
