"""PCI devices, IOMMU groups, NVMe controllers, slots and NICs from sysfs rows."""

import ipaddress
from dataclasses import dataclass

from iommu_audit.parsers.sections import Raw
from iommu_audit.pci import addresses_in, class_name, is_bridge_class


@dataclass(frozen=True)
class PciDevice:
    address: str
    vendor: str  # "144d"
    device: str  # "a808"
    class_code: str  # "010802"
    subsystem: str  # "144d:a801"
    driver: str | None
    driver_override: str | None
    iommu_group: str | None
    path: str  # "pci0000:00/0000:00:02.0/0000:04:00.0/..."

    @property
    def id(self) -> str:
        return f"{self.vendor}:{self.device}"

    @property
    def is_bridge(self) -> bool:
        return is_bridge_class(self.class_code)

    @property
    def kind(self) -> str:
        return class_name(self.class_code)

    def describe(self) -> str:
        """One line for messages: '0000:06:00.0 [144d:a808] NVMe controller, driver nvme'."""
        return f"{self.address} [{self.id}] {self.kind}, driver {self.driver or '(none)'}"


def _hex(value: str) -> str:
    return value.lower().removeprefix("0x")


def _optional(value: str) -> str | None:
    # sysfs prints "(null)" for an unset driver_override.
    return value if value and value != "(null)" else None


_PCI_ATTRS = ("vendor", "device", "class", "subsystem_vendor", "subsystem_device")


def pci_rows(raw: Raw) -> list[list[str]]:
    """Rows of the probe's pci section: address vendor device class subsystem_vendor subsystem_device
    driver driver_override group path (the path below /sys/devices)."""
    return [r if len(r) > 1 else
            [a, *(raw.value(f"{a}/{k}") for k in _PCI_ATTRS), raw.link(f"{a}/driver"),
             raw.value(f"{a}/driver_override"), raw.link(f"{a}/iommu_group"),
             raw.links.get(a, "").split("devices/", 1)[-1]] for r in raw.rows for a in r[:1]]


def pci_devices(rows: list[list[str]]) -> dict[str, PciDevice]:
    out = {}
    for r in rows:
        r = (r + [""] * 10)[:10]
        addr, ven, dev, cls, sven, sdev, drv, override, group, path = r
        out[addr] = PciDevice(
            address=addr, vendor=_hex(ven), device=_hex(dev), class_code=_hex(cls),
            subsystem=f"{_hex(sven)}:{_hex(sdev)}", driver=drv or None,
            driver_override=_optional(override), iommu_group=group or None, path=path,
        )
    return out


def group_rows(raw: Raw) -> list[list[str]]:
    """Rows of the probe's iommu_groups section: group member type."""
    return [r if len(r) > 2 else [r[0], r[1], raw.value(f"{r[0]}/type")] for r in raw.rows if len(r) > 1]


def iommu_groups(rows: list[list[str]]) -> tuple[dict[str, list[str]], dict[str, str]]:
    """({group: [member addresses]}, {group: default domain type})."""
    members: dict[str, list[str]] = {}
    types: dict[str, str] = {}
    for r in rows:
        group, addr = r[0], r[1]
        members.setdefault(group, []).append(addr)
        if len(r) > 2 and r[2]:
            types[group] = r[2]
    return members, types


@dataclass(frozen=True)
class NvmeController:
    address: str
    name: str
    serial: str
    model: str


def nvme_rows(raw: Raw) -> list[list[str]]:
    """Rows of the probe's nvme section: address controller serial model."""
    return [r if len(r) > 2 else [a, c, raw.value(f"{a}/nvme/{c}/serial"), raw.value(f"{a}/nvme/{c}/model")]
            for r in raw.rows if len(r) > 1 for a, c in [r[:2]]]


def nvme_controllers(rows: list[list[str]]) -> dict[str, NvmeController]:
    out = {}
    for r in rows:
        r = (r + [""] * 4)[:4]
        out[r[0]] = NvmeController(r[0], r[1], r[2].strip(), r[3].strip())
    return out


def slot_rows(raw: Raw) -> list[list[str]]:
    """Rows of the probe's slots section: slot address."""
    return [r for r in raw.rows if len(r) > 1] + \
        [[path.removesuffix("/address"), v] for path, v in raw.values.items() if path.endswith("/address")]


def slots(rows: list[list[str]]) -> dict[str, str]:
    """{slot name: "dddd:bb:dd"} (slots hold a device number, every function)."""
    return {r[0]: r[1] for r in rows if len(r) > 1 and r[1]}


@dataclass(frozen=True)
class Network:
    nic_address: dict[str, str]  # interface -> PCI address
    uppers: dict[str, list[str]]  # interface -> bridge/bond/VLAN interfaces stacked on it
    default_route: list[str]  # interfaces
    addresses: dict[str, list[str]]  # interface -> IPs
    tcp_local: list[tuple[str, int]]  # local (ip, port) of established TCP connections

    def stacked(self, ifc: str) -> list[str]:
        """ifc and every interface above it (eno1 -> bond0 -> vmbr0)."""
        seen, todo = [], [ifc]
        while todo:
            cur = todo.pop()
            if cur not in seen:
                seen.append(cur)
                todo += self.uppers.get(cur, [])
        return seen


def net_rows(raw: Raw) -> list[list[str]]:
    """Rows of the probe's net section: dev NAME PCI-FUNCTION "UPPER UPPER " joined from its links, others as sent."""
    out = []
    for r in raw.rows:
        if r[0] == "dev" and len(r) == 2:
            n = r[1]
            uppers = [f"{n}/master"] + [p for p in raw.links if p.startswith(f"{n}/upper_")]
            r = ["dev", n, raw.link(f"{n}/device"), "".join(raw.link(u) + " " for u in uppers if u in raw.links)]
        out.append(r)
    return out


def network(rows: list[list[str]]) -> Network:
    nics, uppers, default, addrs, tcp = {}, {}, [], {}, []
    for r in rows:
        if r[0] == "dev" and len(r) > 1:
            if len(r) > 2 and r[2]:
                nics[r[1]] = r[2]
            if len(r) > 3 and r[3].strip():
                uppers[r[1]] = list(dict.fromkeys(r[3].split()))
        elif r[0] == "default":
            default.append(r[1])
        elif r[0] == "addr" and len(r) > 2:
            addrs.setdefault(r[1], []).append(r[2])
        elif r[0] == "tcp" and len(r) > 1:
            endpoint = _tcp_endpoint(r[1])
            if endpoint:
                tcp.append(endpoint)
    return Network(nics, uppers, default, addrs, tcp)


def _tcp_endpoint(text: str) -> tuple[str, int] | None:
    """'0F02000A:0016' -> ('10.0.2.15', 22); /proc/net/tcp6 addresses are four little-endian words."""
    addr, _, port = text.partition(":")
    try:
        raw = bytes.fromhex(addr)
        if len(raw) == 4:
            ip = ipaddress.IPv4Address(raw[::-1])
        elif len(raw) == 16:
            ip = ipaddress.IPv6Address(b"".join(raw[i:i + 4][::-1] for i in range(0, 16, 4)))
            ip = ip.ipv4_mapped or ip
        else:
            return None
        return str(ip), int(port, 16)
    except ValueError:
        return None


def pci_address_of(sysfs_path: str) -> str | None:
    """The PCI function a device path hangs under (the last one on the path)."""
    found = addresses_in(sysfs_path)
    return found[-1] if found else None
