"""Firmware: the ACPI table that describes the IOMMU."""

from iommu_audit.facts import HostFacts
from iommu_audit.profile import Profile
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
