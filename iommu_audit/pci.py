"""PCI addresses and device classes.

>>> normalize_address("0000:05:00.0")
'0000:05:00.0'
>>> normalize_address("C0:00.2")          # lspci short form, domain 0
'0000:c0:00.2'
>>> is_bridge_class("0x060400")
True
"""

import re

# domain:bus:device.function. VMD domains can exceed four hex digits (10000:e1:00.0).
_ADDRESS = re.compile(r"^(?:([0-9a-f]{4,8}):)?([0-9a-f]{2}):([01][0-9a-f])\.([0-7])$")
_SYSFS_ADDRESS = re.compile(r"^[0-9a-f]{4,8}:[0-9a-f]{2}:[01][0-9a-f]\.[0-7]$")


class AddressError(ValueError):
    pass


def normalize_address(text: str) -> str:
    """Return the canonical sysfs form of a PCI address, or raise AddressError."""
    m = _ADDRESS.match(str(text).strip().lower())
    if not m:
        raise AddressError(f"{text!r} is not a PCI address (expected DDDD:BB:DD.F, e.g. 0000:05:00.0)")
    domain, bus, dev, fn = m.groups()
    return f"{domain or '0000'}:{bus}:{dev}.{fn}"


def address_numbers(text: str) -> tuple[int, int, int, int]:
    """(domain, bus, slot, function) as integers, for comparing with libvirt XML."""
    domain, bus, rest = normalize_address(text).split(":")
    slot, fn = rest.split(".")
    return int(domain, 16), int(bus, 16), int(slot, 16), int(fn, 16)


def addresses_in(path: str) -> list[str]:
    """PCI addresses along a sysfs device path, root first."""
    return [part for part in path.split("/") if _SYSFS_ADDRESS.match(part)]


# PCI class codes (first two bytes of sysfs "class") whose header type is a bridge
# (type 1/2). The kernel's VFIO viability rule ignores such devices in a group.
_BRIDGE_CLASSES = {"0604", "0609", "0607"}
_CLASS_NAMES = {
    "0100": "SCSI controller", "0104": "RAID controller", "0106": "SATA controller",
    "0107": "SAS controller", "0108": "NVMe controller", "0200": "Ethernet controller",
    "0300": "VGA controller", "0302": "3D controller", "0403": "Audio device",
    "0600": "Host bridge", "0601": "ISA bridge", "0604": "PCI bridge",
    "0609": "PCI bridge", "0806": "IOMMU", "0c03": "USB controller", "0c05": "SMBus",
}


def class_prefix(class_code: str) -> str:
    code = class_code.lower().removeprefix("0x")
    return code[:4]


def is_bridge_class(class_code: str) -> bool:
    return class_prefix(class_code) in _BRIDGE_CLASSES


def class_name(class_code: str) -> str:
    return _CLASS_NAMES.get(class_prefix(class_code), f"class {class_prefix(class_code)}")
