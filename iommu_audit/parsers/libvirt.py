"""libvirt domain definitions: which host PCI functions and disks each VM gets."""

import xml.etree.ElementTree as ET
from dataclasses import dataclass


@dataclass(frozen=True)
class Hostdev:
    address: tuple[int, int, int, int]  # domain, bus, slot, function
    managed: bool


@dataclass(frozen=True)
class Placement:
    """Where a VM's vCPUs and memory may run: <vcpu cpuset>, <cputune><vcpupin>, <numatune><memory>."""
    vcpus: int = 0
    cpuset: str = ""  # <vcpu cpuset='0-9,20-29'>; "" = any host CPU
    vcpupin: tuple[tuple[int, str], ...] = ()  # (vcpu, cpuset): overrides cpuset for that vCPU
    auto: bool = False  # placement='auto': numad chooses, not the device's node
    memory_nodeset: str = ""  # <numatune><memory nodeset='0'/>
    memory_mode: str = ""  # strict | preferred | interleave | restrictive


@dataclass(frozen=True)
class Domain:
    name: str
    running: bool
    hostdevs: tuple[Hostdev, ...]
    block_disks: tuple[str, ...]  # <disk type='block'><source dev=...>
    error: str = ""  # set when the definition could not be read or parsed
    placement: Placement = Placement()
    file_disks: tuple[str, ...] = ()  # <disk type='file'><source file=...>: a /dev path here reaches a disk too
    hot_plugged: tuple = ()  # hostdevs and disk sources only in the live definition: gone when the VM restarts


def _number(text: str | None) -> int:
    """Address attributes as libvirt reads them (strtol base 0): '0x10' hex, '010' octal, '16' decimal."""
    text = (text or "0").strip().lower()
    if text.startswith("0x"):
        return int(text, 16)
    if text.startswith("0") and len(text) > 1:
        return int(text, 8)
    return int(text, 10)


_FILES = {"defined": "./etc/libvirt/qemu/", "live": "./run/libvirt/qemu/"}
_DIRS = tuple(_FILES.values())


def files_domains(body: str) -> list[tuple[str, str, str]]:
    """(state, name, XML) of each file the probe listed in a `libvirt source=files` section: rows
    "defined|live NAME", then every line of the files as grep -H prints it ("./etc/libvirt/qemu/NAME.xml:LINE")."""
    listed: list[tuple[str, str]] = []
    lines: dict[str, list[str]] = {}
    for line in body.splitlines():
        state, tab, name = line.partition("\t")
        if tab and state in _FILES:
            listed.append((state, name))
            continue
        path, sep, text = line.partition(".xml:")
        if sep and path.startswith(_DIRS):
            lines.setdefault(path, []).append(text)
    return [(state, name, "\n".join(lines.get(_FILES[state] + name, []))) for state, name in listed]


def domain(name: str, state: str, xml_text: str) -> Domain:
    """One definition: STATE is defined, running, or live (what a running VM holds now)."""
    running = state in ("running", "live")
    try:
        root = ET.fromstring(xml_text)
    except ET.ParseError as exc:
        return Domain(name, running, (), (), f"unreadable definition: {exc}; {xml_text[:200]}")
    if root.tag == "domstatus":  # run/libvirt/qemu/<vm>.xml: the live <domain> inside the daemon's status
        root = root.find("./domain")
        if root is None:
            return Domain(name, running, (), (), "live status (run/libvirt/qemu) without a <domain>")
    hostdevs, disks, files = [], [], []
    # <hostdev type='pci'> and SR-IOV style <interface type='hostdev'> both hand a PCI function over.
    pci = [hd for hd in root.iterfind("./devices/hostdev")
           if hd.get("mode", "subsystem") == "subsystem" and hd.get("type") == "pci"]
    pci += list(root.iterfind("./devices/interface[@type='hostdev']"))
    for hd in pci:
        a = hd.find("./source/address")
        if a is None:
            continue
        try:
            addr = tuple(_number(a.get(k)) for k in ("domain", "bus", "slot", "function"))
        except ValueError:
            continue
        hostdevs.append(Hostdev(addr, hd.get("managed", "no") == "yes"))
    for disk in root.iterfind("./devices/disk"):
        src = disk.find("./source")
        if src is None:
            continue
        if disk.get("type") == "block" and src.get("dev"):
            disks.append(src.get("dev"))
        elif disk.get("type") == "file" and src.get("file"):
            files.append(src.get("file"))
    return Domain(name, running, tuple(hostdevs), tuple(disks), placement=placement(root), file_disks=tuple(files))


def merged(defined: Domain, live: Domain) -> Domain:
    """The persistent definition plus what the live one holds on top (hot-plugged devices)."""
    def both(a, b):
        return tuple(dict.fromkeys(a + b))
    persistent = set(defined.hostdevs + defined.block_disks + defined.file_disks)
    hot = tuple(x for x in live.hostdevs + live.block_disks + live.file_disks if x not in persistent)
    return Domain(defined.name, True, both(defined.hostdevs, live.hostdevs), both(defined.block_disks, live.block_disks),
                  defined.error or live.error,
                  placement=defined.placement if defined.placement != Placement() else live.placement,
                  file_disks=both(defined.file_disks, live.file_disks), hot_plugged=hot)


def placement(root: ET.Element) -> Placement:
    vcpu = root.find("./vcpu")
    pins = []
    for pin in root.iterfind("./cputune/vcpupin"):
        if (pin.get("vcpu") or "").isdigit() and pin.get("cpuset"):
            pins.append((int(pin.get("vcpu")), pin.get("cpuset")))
    memory = root.find("./numatune/memory")
    count = (vcpu.text or "").strip() if vcpu is not None else ""
    auto = (vcpu is not None and vcpu.get("placement") == "auto") or \
        (memory is not None and memory.get("placement") == "auto")
    return Placement(int(count) if count.isdigit() else 0, (vcpu.get("cpuset") or "") if vcpu is not None else "",
                     tuple(pins), auto, (memory.get("nodeset") or "") if memory is not None else "",
                     (memory.get("mode") or "strict") if memory is not None else "")
