"""Kernel log lines about the IOMMU, classified.

The log is supporting evidence only: boot lines rotate out of the ring buffer,
and kernels built with the IOMMU on by default never print "IOMMU enabled".

>>> [f.kind for f in classify(["[    0.000000] DMAR: IOMMU enabled"])]
['intel_enabled']
"""

import re
from dataclasses import dataclass

from iommu_audit.pci import AddressError, normalize_address

_TIMESTAMP = re.compile(r"^\[\s*(\d+)\.\d+\]")
_DEVICE = re.compile(r"\b(?:pci|vfio-pci|vfio_pci|vfio|nvme|DMAR|ahci)\s+((?:[0-9a-f]{4,8}:)?[0-9a-f]{2}:[01][0-9a-f]\.[0-7])\b", re.I)

# (kind, pattern), first match wins. Message texts from drivers/iommu/intel/*.c,
# drivers/iommu/amd/init.c and drivers/vfio/vfio_iommu_type1.c, 3.x to 6.x.
_KINDS = [
    ("acpi_dmar", r"ACPI: DMAR\s+(0x)?[0-9a-fA-F]{8}"),
    ("acpi_ivrs", r"ACPI: IVRS\s+(0x)?[0-9a-fA-F]{8}"),
    # The kernel works around an RMRR outside reserved memory and goes on: evidence, not a blocker.
    ("rmrr_unreserved", r"No firmware reserved region can cover this RMRR"),
    ("firmware_bug", r"\[Firmware Bug\].*(DMAR|IOMMU|RMRR|IVRS|AMD-Vi|DRHD)|(DMAR|AMD-Vi|IVRS).*\[Firmware Bug\]"
                     # dmar.c/iommu.c warnings; 3.x-4.x printed them inside a WARN splat without any prefix.
                     r"|Your BIOS is broken"
                     # A DRHD (remapping unit) at address 0: the DMAR table is unusable.
                     r"|DRHD base: 0x0+ flags"
                     # AMD: an IOAPIC missing from IVRS (logged above as [Firmware Bug]) switches IR off.
                     r"|AMD-Vi: Disabling interrupt remapping"),
    # The continuation line of a "Your BIOS is broken" warning: which firmware to update.
    ("bios_vendor", r"^\s*(\[[^]]*\]\s*)?BIOS vendor: .*; Ver: "),
    # Each device with an RMRR at boot, 3.x ("IOMMU: ") and 4.x ("DMAR: "); iommu=pt prints "Ignoring
    # identity map for HW passthrough device" instead. The LPC bridge's 0-16MiB map reads the same.
    ("rmrr_identity_map", r"(Setting|Ignoring) identity map for (HW passthrough )?device (?P<addr>\S+) \["),
    # <= 6.2 (vfio/intel); >= 6.3 the IOMMU core refuses devices with a firmware 1:1 (RMRR) mapping.
    ("rmrr_ineligible", r"ineligible for IOMMU domain attach due to platform RMRR requirement"
                        r"|Firmware has requested this device have a 1:1 IOMMU mapping"),
    ("unsafe_interrupts", r"No interrupt remapping support\.\s+Use the module param"),
    ("intel_disabled", r"(DMAR|Intel-IOMMU): (IOMMU )?disabled\b"),
    ("intel_enabled", r"(DMAR: IOMMU enabled|Intel-IOMMU: enabled|DMAR: Intel-IOMMU force enabled)"),
    ("vtd_active", r"Intel\(R\) Virtualization Technology for Directed I/O"),
    ("ir_enabled", r"Enabled IRQ remapping in (x2apic|xapic) mode|AMD-Vi: Interrupt remapping enabled"),
    ("ir_failed", r"(DMAR-IR|AMD-Vi).*(Failed to enable irq remapping|Not enabling interrupt remapping|IRQ remapping disabled)"),
    ("amd_unknown_option", r"AMD-Vi: Unknown option"),
    ("amd_found", r"AMD-Vi: Found IOMMU"),
    ("amd_disabled", r"AMD-Vi: (AMD IOMMU disabled|IOMMU disabled|Disabling IOMMU)"),
    ("group_added", r"Adding to iommu group \d+|iommu: Adding device \S+ to group \d+"),
    ("default_domain", r"iommu: Default domain type:"),
]
_COMPILED = [(kind, re.compile(p)) for kind, p in _KINDS]
# printk lines are at most 1024 bytes; a longer "line" is garbage, and the ".*" patterns
# above would take quadratic time on it (a 170 KB line took 35 s).
MAX_LINE = 4096


@dataclass(frozen=True)
class Finding:
    kind: str
    line: str
    address: str | None = None


def classify(lines: list[str]) -> list[Finding]:
    out = []
    for line in lines:
        line = line[:MAX_LINE]
        for kind, rx in _COMPILED:
            hit = rx.search(line)
            if hit:
                m = _DEVICE.search(line)
                addr = hit.groupdict().get("addr") or (m.group(1) if m else None)
                out.append(Finding(kind, line.strip(), _address(addr)))
                break
    return out


def _address(text: str | None) -> str | None:
    try:
        return normalize_address(text) if text else None
    except AddressError:
        return None


def boot_messages_present(first_line: str) -> bool:
    """False when the ring buffer no longer starts at boot (a long-running host)."""
    m = _TIMESTAMP.match(first_line)
    return bool(m) and int(m.group(1)) == 0 or "Linux version" in first_line
