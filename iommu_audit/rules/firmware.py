"""Firmware: the ACPI table that describes the IOMMU, and the memory it reserves for devices (RMRR)."""

from iommu_audit.facts import HostFacts
from iommu_audit.profile import Device, Profile
from iommu_audit.rules.devices import _missing as device_missing, locate
from iommu_audit.verdict import Verdict, failed, passed

TABLE = {"intel": "DMAR", "amd": "IVRS"}
GENERIC_HINT = {
    "intel": "enable Intel VT-d (Virtualization Technology for Directed I/O) in the BIOS/UEFI setup",
    "amd": "enable AMD-Vi / IOMMU in the BIOS/UEFI setup (often under NBIO or AMD CBS)",
}


def firmware_iommu(facts: HostFacts, profile: Profile) -> Verdict:
    vendor = profile.cpu_vendor
    table = TABLE[vendor]
    present = [t for t in facts.acpi_tables if t.rstrip("0123456789") == table]
    evidence = [f.line for f in facts.findings("acpi_" + table.lower())]
    if facts.cpu_vendor in TABLE and facts.cpu_vendor != vendor:
        return failed(f"the host CPU is {facts.cpu_vendor}, the profile {profile.name} is for {vendor}",
                      f"a host matching the profile ({vendor})", "audit this host with a profile for its platform",
                      evidence)
    if present:
        return passed(f"ACPI {table} table present ({', '.join(present)})", evidence)
    seen = ", ".join(facts.acpi_tables) if facts.acpi_tables else "none readable at /sys/firmware/acpi/tables"
    return failed(f"no ACPI {table} table (tables: {seen})", f"an ACPI {table} table",
                  profile.firmware_hint or GENERIC_HINT[vendor], evidence)


# --- RMRR lock-out ---------------------------------------------------------------------------

RMRR_FIX = ("the firmware reserves memory (RMRR) for this device, so VFIO will refuse it. HPE ProLiant: exclude the "
            "slot from 'HPE Shared Memory features' with conrep (HPE's advisory on RMRR and PCI passthrough), then "
            "reboot; other platforms: ask the vendor for a firmware option, or move the card to a slot without RMRR "
            "or pass another device")
# RMRRs of USB controllers and graphics are relaxable: the kernel drops the 1:1 map for VFIO
# (device_rmrr_is_relaxable, 5.3+, "direct-relaxable"; before that device_is_rmrr_locked() exempted them).
_RELAXABLE_CLASSES = ("0c03", "03")


def _relaxable(dev) -> bool:
    return dev is not None and dev.class_code.startswith(_RELAXABLE_CLASSES)


def no_rmrr_lockout(facts: HostFacts, device: Device) -> Verdict:
    """A firmware RMRR ("direct" reserved region) in the device's group blocks VFIO before any VM starts."""
    located = locate(facts, device)
    addr = located or device.address
    # A refusal naming the profile's address is proof by itself, present device or not.
    refused = [f.line for f in facts.findings("rmrr_ineligible") if addr and f.address == addr]
    if refused:
        return failed(f"the kernel refused {addr} for VFIO: platform RMRR", "no RMRR on the device", RMRR_FIX, refused)
    dev = facts.pci.get(located) if located else None
    group = dev.iommu_group if dev else None
    regions = facts.platform.reserved.get(group) if group else None
    if regions is not None:
        members = [facts.pci.get(a) for a in facts.groups.get(group, [])]
        endpoints = [m for m in members if m is not None and not m.is_bridge] or [dev]
        where = f"/sys/kernel/iommu_groups/{group}/reserved_regions"
        direct = [r for r in regions if r.type == "direct"]
        if direct and not all(_relaxable(m) for m in endpoints):
            return failed(f"IOMMU group {group} of {addr} has an RMRR the kernel must keep identity-mapped: "
                          + ", ".join(map(str, direct)), "no 'direct' reserved region in the device's group",
                          RMRR_FIX, [f"{where}: " + "; ".join(map(str, regions))])
        kinds = ", ".join(sorted({r.type for r in regions})) or "none"
        return passed(f"no RMRR lock-out: group {group} of {addr} has reserved regions: {kinds}",
                      [f"{where}: " + "; ".join(map(str, regions))])
    # Kernels before 4.11 (no reserved_regions), or the device is absent: the boot log's RMRR lines.
    mapped = [f.line for f in facts.findings("rmrr_identity_map") if addr and f.address == addr]
    if mapped and not _relaxable(dev):
        return failed(f"the firmware gives {addr} an RMRR (identity map at boot)", "no RMRR on the device",
                      RMRR_FIX, mapped)
    if dev is None:
        return device_missing(device)
    if mapped:
        return passed(f"{addr} has a USB/graphics RMRR, which VFIO relaxes", mapped)
    if facts.boot_log:
        return passed(f"no RMRR identity map for {addr} in the boot log (no reserved_regions file: kernel before 4.11)")
    if facts.offline_copy:
        gap = (f"the copy has no sys/kernel/iommu_groups/{group}/reserved_regions" if group else
               f"the copy has no IOMMU group for {addr}") + " and its dmesg does not start at boot"
        return failed(f"cannot tell whether {addr} has an RMRR: {gap}", "reserved_regions or the boot log in the copy",
                      "copy /sys/kernel/iommu_groups/*/reserved_regions (and a dmesg taken since boot) into the sysroot")
    why = f"IOMMU group {group} has no reserved_regions file (kernel before 4.11)" if group else f"{addr} is in no IOMMU group"
    return failed(f"cannot tell whether {addr} has an RMRR: {why}, and the boot messages have rotated out of the log",
                  "reserved_regions, or the boot messages", "see iommu-active; on kernels before 4.11 keep the boot "
                  "log (persistent journal: journalctl -k -b) so the RMRR lines can be read")

