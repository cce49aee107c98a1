"""Hardware profiles: what a host model must look like, loaded and validated.

Every mistake is reported as one ProfileError line naming the file, the path in
the document and the offending value, e.g.

    profiles/x.yaml: devices[2].address: '05:00' is not a PCI address (...)
"""

import datetime
import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from iommu_audit.pci import AddressError, normalize_address
from iommu_audit.requirements import CATALOG, DEVICE, DISK, HOST, SEVERITIES

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_PCI_ID = re.compile(r"^[0-9a-fA-F]{4}:[0-9a-fA-F]{4}$")  # lspci prints lower case; accept both
# libvirt domain names: printable, no '/'; we also refuse control characters.
_VM_NAME = re.compile(r"^[^/\x00-\x1f\x7f]+$")
_BY_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:+@-]*$")


class ProfileError(Exception):
    pass


@dataclass(frozen=True)
class Device:
    """A PCI function: passed to `vm`, or kept on the host (vm is None).

    Found by address or slot; a serial is only verified (an NVMe serial is readable
    only while the nvme driver holds the drive, not once it is on vfio-pci).
    """
    name: str
    id: str
    vm: str | None
    address: str | None = None
    serial: str | None = None
    slot: str | None = None
    description: str = ""


@dataclass(frozen=True)
class Disk:
    name: str
    by_id: str
    vm: str
    description: str = ""

    @property
    def path(self) -> str:
        return f"/dev/disk/by-id/{self.by_id}"


@dataclass(frozen=True)
class Waiver:
    requirement: str
    reason: str
    expires: datetime.date
    approved_by: str
    device: str | None = None  # device or disk name; None: the whole requirement
    host: str | None = None


@dataclass
class Profile:
    name: str
    path: str
    description: str
    cpu_vendor: str
    firmware_hint: str
    cmdline_require: list[str]
    cmdline_forbid: list[str]
    devices: list[Device]
    disks: list[Disk]
    severity: dict[str, str] = field(default_factory=dict)
    waivers: list[Waiver] = field(default_factory=list)

    @property
    def passthrough_devices(self) -> list[Device]:
        return [d for d in self.devices if d.vm]

    @property
    def host_devices(self) -> list[Device]:
        return [d for d in self.devices if not d.vm]

    def severity_of(self, requirement: str) -> str:
        return self.severity.get(requirement, CATALOG[requirement].severity)

    def device_named(self, name: str) -> Device | Disk | None:
        return next((d for d in [*self.devices, *self.disks] if d.name == name), None)


def resolve(name_or_path: str, profile_dir: Path) -> Path:
    """'dl360-gen9' -> <profile_dir>/dl360-gen9.yaml; a path is taken as it is."""
    p = Path(name_or_path)
    if p.suffix in (".yaml", ".yml") or "/" in name_or_path:
        return p
    return profile_dir / f"{name_or_path}.yaml"


# libyaml's parser when PyYAML has it: the pure-Python one takes ~0.1 s per 256 devices.
_BaseLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _UniqueKeyLoader(_BaseLoader):
    """SafeLoader that refuses duplicate keys instead of silently keeping the last (aliases: _refuse_aliases)."""


def _refuse_aliases(text: str) -> None:
    """A profile has no use for aliases (*x, <<: *x), and a few lines of nested ones expand to
    billions of nodes (the "billion laughs"): refuse them before anything is composed."""
    for event in yaml.parse(text, Loader=_BaseLoader):
        if isinstance(event, yaml.AliasEvent):
            raise ProfileError(f"line {event.start_mark.line + 1}: YAML alias *{event.anchor} is not allowed "
                               "in a profile; write the value out")


def _construct_mapping(loader, node, deep=False):
    seen = set()
    for key_node, _ in node.value:
        if not isinstance(key_node, yaml.ScalarNode):  # [a, b]: or {a: b}: as a key
            raise ProfileError(f"line {key_node.start_mark.line + 1}: a key must be a plain name, "
                               f"not a {key_node.id}")
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise ProfileError(f"line {key_node.start_mark.line + 1}: duplicate key {key!r}")
        seen.add(key)
    return yaml.constructor.SafeConstructor.construct_mapping(loader, node, deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)
# Dates stay text: the validator checks them with a path in the message, and an
# impossible date (2099-13-01) or one with a time cannot slip through as a datetime.
_UniqueKeyLoader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
# Requirements no profile may downgrade or waive: without them nothing else was checked.
ALWAYS_REQUIRED = {"facts-gathered": "cannot be downgraded or waived: a host that could not be read "
                                     "was not checked, so it never passes; remove this entry"}


def load(name_or_path: str, profile_dir: Path) -> Profile:
    path = resolve(name_or_path, profile_dir)
    shown = str(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        known = ", ".join(sorted(p.stem for p in profile_dir.glob("*.yaml"))) or "none"
        raise ProfileError(f"{shown}: no such profile (bundled profiles: {known}; or give a path to a .yaml file)") from None
    except OSError as exc:
        raise ProfileError(f"{shown}: cannot read it: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise ProfileError(f"{shown}: not UTF-8 text (byte {exc.start}); save it as UTF-8") from None
    try:
        _refuse_aliases(text)
        doc = yaml.load(text, Loader=_UniqueKeyLoader)
    except ProfileError as exc:
        raise ProfileError(f"{shown}: {exc}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark else ""
        raise ProfileError(f"{shown}: {where}not valid YAML: {getattr(exc, 'problem', exc)}") from None
    return _Validator(shown).profile(doc)


def _or_empty(value):
    """An absent (or empty 'key:') section is an empty mapping; anything else is validated as it is."""
    return {} if value is None else value


class _Validator:
    def __init__(self, file: str):
        self.file = file

    def fail(self, where: str, msg: str):
        raise ProfileError(f"{self.file}: {where}: {msg}")

    def mapping(self, value, where: str, allowed: set[str], required: set[str] = frozenset()) -> dict:
        if not isinstance(value, dict):
            self.fail(where, f"expected a mapping, got {value!r}")
        for key in value:
            if key not in allowed:
                self.fail(f"{where}.{key}" if where != "(top)" else str(key),
                          f"unknown key (allowed: {', '.join(sorted(allowed))})")
        for key in required:
            if key not in value:
                self.fail(where, f"missing required key {key!r}")
        return value

    def string(self, value, where: str, pattern: re.Pattern | None = None, hint: str = "") -> str:
        if not isinstance(value, str):
            extra = " (quote it: YAML reads unquoted values like 0000:05:00.0 as numbers)" if isinstance(value, (int, float)) else ""
            self.fail(where, f"expected a string, got {value!r}{extra}")
        if pattern and not pattern.match(value):
            self.fail(where, f"{value!r} is not valid{': ' + hint if hint else ''}")
        return value

    def strings(self, value, where: str) -> list[str]:
        if value is None:
            return []
        if not isinstance(value, list):
            self.fail(where, f"expected a list, got {value!r}")
        return [self.string(v, f"{where}[{i}]") for i, v in enumerate(value)]

    def profile(self, doc) -> Profile:
        if doc is None:
            self.fail("(top)", "the profile is empty")
        top = self.mapping(doc, "(top)", {"name", "description", "platform", "kernel", "devices", "disks",
                                           "severity", "waivers"}, {"name", "platform"})
        name = self.string(top["name"], "name", _NAME, "letters, digits, '.', '_', '-'")
        plat = self.mapping(top["platform"], "platform", {"cpu_vendor", "firmware_hint"}, {"cpu_vendor"})
        vendor = self.string(plat["cpu_vendor"], "platform.cpu_vendor")
        if vendor not in ("intel", "amd"):
            self.fail("platform.cpu_vendor", f"{vendor!r} is not one of: intel, amd")
        kernel = self.mapping(_or_empty(top.get("kernel")), "kernel", {"cmdline_require", "cmdline_forbid"})
        devices = [self.device(d, f"devices[{i}]") for i, d in enumerate(self.seq(top.get("devices"), "devices"))]
        disks = [self.disk(d, f"disks[{i}]") for i, d in enumerate(self.seq(top.get("disks"), "disks"))]
        self.unique(devices, disks)
        severity = self.severities(_or_empty(top.get("severity")))
        waivers = [self.waiver(w, f"waivers[{i}]", devices, disks)
                   for i, w in enumerate(self.seq(top.get("waivers"), "waivers"))]
        return Profile(
            name=name, path=self.file, description=str(top.get("description") or ""), cpu_vendor=vendor,
            firmware_hint=str(plat.get("firmware_hint") or ""),
            cmdline_require=self.strings(kernel.get("cmdline_require"), "kernel.cmdline_require"),
            cmdline_forbid=self.strings(kernel.get("cmdline_forbid"), "kernel.cmdline_forbid"),
            devices=devices, disks=disks, severity=severity, waivers=waivers,
        )

    def seq(self, value, where: str) -> list:
        if value is None:
            return []
        if not isinstance(value, list):
            self.fail(where, f"expected a list, got {value!r}")
        return value

    def device(self, d, where: str) -> Device:
        d = self.mapping(d, where, {"name", "id", "address", "serial", "slot", "vm", "host", "description"},
                         {"name", "id"})
        name = self.string(d["name"], f"{where}.name", _NAME, "letters, digits, '.', '_', '-'")
        pci_id = self.string(d["id"], f"{where}.id", _PCI_ID, "vendor:device in hex, e.g. 144d:a808").lower()
        address = None
        if "address" in d:
            try:
                address = normalize_address(self.string(d["address"], f"{where}.address"))
            except AddressError as exc:
                self.fail(f"{where}.address", str(exc))
        if not (address or "slot" in d):
            self.fail(where, "give address or slot to find the device"
                             + (": a serial only verifies it (the NVMe serial is readable only while the nvme "
                                "driver holds the drive, so a drive on vfio-pci cannot be found by it)"
                                if "serial" in d else ""))
        if ("vm" in d) == bool(d.get("host")):
            self.fail(where, "give either vm: <libvirt domain> (pass it through) or host: true (keep it on the host)")
        if "host" in d and d["host"] is not True:
            self.fail(f"{where}.host", f"expected true, got {d['host']!r}")
        vm = self.string(d["vm"], f"{where}.vm", _VM_NAME, "a libvirt domain name") if "vm" in d else None
        return Device(name=name, id=pci_id, vm=vm, address=address,
                      serial=self.string(d["serial"], f"{where}.serial") if "serial" in d else None,
                      slot=str(self.string(d["slot"], f"{where}.slot")) if "slot" in d else None,
                      description=str(d.get("description") or ""))

    def disk(self, d, where: str) -> Disk:
        d = self.mapping(d, where, {"name", "by_id", "vm", "description"}, {"name", "by_id", "vm"})
        by_id = self.string(d["by_id"], f"{where}.by_id", _BY_ID,
                            "a name from /dev/disk/by-id, e.g. wwn-0x5000c500a1b2c3d4 (no path, no '/')")
        return Disk(name=self.string(d["name"], f"{where}.name", _NAME, "letters, digits, '.', '_', '-'"),
                    by_id=by_id, vm=self.string(d["vm"], f"{where}.vm", _VM_NAME, "a libvirt domain name"),
                    description=str(d.get("description") or ""))

    def unique(self, devices: list[Device], disks: list[Disk]) -> None:
        names: dict[str, str] = {}
        for i, item in [*((f"devices[{i}]", d) for i, d in enumerate(devices)),
                        *((f"disks[{i}]", d) for i, d in enumerate(disks))]:
            if item.name in names:
                self.fail(f"{i}.name", f"{item.name!r} is already used by {names[item.name]}")
            names[item.name] = i
        seen: dict[str, tuple[str, Device | Disk]] = {}
        keys = [(f"devices[{i}]", d, d.address) for i, d in enumerate(devices)] + \
               [(f"disks[{i}]", d, d.by_id) for i, d in enumerate(disks)]
        for where, item, key in keys:
            if key is None:
                continue
            if key in seen:
                other_where, other = seen[key]
                owner = lambda x: f"VM {x.vm}" if x.vm else "the host"
                self.fail(where, f"{key} is also listed at {other_where}: one device cannot go to both "
                                 f"{owner(other)} and {owner(item)}")
            seen[key] = (where, item)

    def severities(self, value) -> dict[str, str]:
        value = self.mapping(value, "severity", set(CATALOG))
        for req, sev in value.items():
            if req in ALWAYS_REQUIRED:
                self.fail(f"severity.{req}", ALWAYS_REQUIRED[req])
            if sev not in SEVERITIES:
                self.fail(f"severity.{req}", f"{sev!r} is not one of: {', '.join(SEVERITIES)}")
        return dict(value)

    def waived_subject(self, name: str, scope: str, req: str, where: str,
                       devices: list[Device], disks: list[Disk]) -> None:
        """A device waiver must name what the requirement is checked on, or it could never match."""
        device_names, disk_names = {d.name for d in devices}, {d.name for d in disks}
        if name not in device_names | disk_names:
            self.fail(where, f"{name!r} is not a device or disk named in this profile")
        if scope == HOST:
            self.fail(where, f"{req} is checked once per host, not per device or disk, so a waiver naming "
                             f"{name!r} would never apply: remove device: (host: limits a waiver to one host)")
        if scope == DEVICE and name not in device_names:
            self.fail(where, f"{name!r} is a disk, but {req} is checked per PCI device: name one from devices:")
        if scope == DISK and name not in disk_names:
            self.fail(where, f"{name!r} is a PCI device, but {req} is checked per disk: name one from disks:")

    def waiver(self, w, where: str, devices: list[Device], disks: list[Disk]) -> Waiver:
        w = self.mapping(w, where, {"requirement", "device", "host", "reason", "expires", "approved_by"},
                         {"requirement", "reason", "expires", "approved_by"})
        req = self.string(w["requirement"], f"{where}.requirement")
        if req not in CATALOG:
            self.fail(f"{where}.requirement", f"{req!r} is not a requirement (see README: Requirements)")
        if req in ALWAYS_REQUIRED:
            self.fail(f"{where}.requirement", ALWAYS_REQUIRED[req])
        device = self.string(w["device"], f"{where}.device") if "device" in w else None
        if device is not None:
            self.waived_subject(device, CATALOG[req].scope, req, f"{where}.device", devices, disks)
        raw = str(w["expires"])
        try:
            if not _DATE.match(raw):
                raise ValueError(raw)
            expires = datetime.date.fromisoformat(raw)
        except ValueError:
            self.fail(f"{where}.expires", f"{w['expires']!r} is not a date (YYYY-MM-DD)")
        reason = self.string(w["reason"], f"{where}.reason").strip()
        if not reason:
            self.fail(f"{where}.reason", "a waiver needs a reason an auditor can read")
        return Waiver(requirement=req, reason=reason, expires=expires,
                      approved_by=self.string(w["approved_by"], f"{where}.approved_by"),
                      device=device, host=self.string(w["host"], f"{where}.host") if "host" in w else None)
