"""The requirements iommu-audit proves: one entry each, stated once, shown in reports.

Each has a check in checks/ (marked @pytest.mark.requirement("<id>")) and, where
a host change can fix it, a remediation in fixes/ named after the same id.
"""

from dataclasses import dataclass

REQUIRED = "required"
RECOMMENDED = "recommended"
SEVERITIES = (REQUIRED, RECOMMENDED)


HOST, DEVICE, DISK = "host", "device", "disk"  # what one test of the requirement is about


@dataclass(frozen=True)
class Requirement:
    id: str
    title: str
    rationale: str
    severity: str = REQUIRED
    scope: str = HOST


_ALL = [
    Requirement("facts-gathered", "Host facts can be gathered",
                "Nothing about a host can be proven without reading it."),
    Requirement("firmware-iommu", "IOMMU enabled in firmware (ACPI DMAR / IVRS)",
                "Without VT-d/AMD-Vi in firmware the kernel has no IOMMU to program; "
                "passthrough is impossible or unsafe."),
    Requirement("cmdline-iommu", "Kernel command line enables the IOMMU",
                "Many distribution kernels leave Intel DMA remapping off unless intel_iommu=on is given; "
                "iommu=off or amd_iommu=off disable it."),
    Requirement("cmdline-no-acs-override", "No ACS override on the kernel command line",
                "pcie_acs_override makes IOMMU groups look isolated when the hardware does not isolate them: "
                "a VM could then reach other devices' memory by peer-to-peer DMA."),
    Requirement("cmdline-persistent", "Boot configuration keeps the required kernel arguments",
                "What is on /proc/cmdline now is lost at the next reboot unless the boot loader configuration has it."),
    Requirement("iommu-active", "Kernel DMA remapping is active (IOMMU groups exist)",
                "Only a running IOMMU with groups lets VFIO confine a device's DMA to its VM."),
    Requirement("interrupt-remapping", "Interrupt remapping enabled",
                "Without it a device can inject arbitrary interrupts (MSI) into the host; "
                "VFIO refuses such devices unless allow_unsafe_interrupts is set."),
    Requirement("vfio-modules", "VFIO kernel modules loaded",
                "vfio, vfio_pci and vfio_iommu_type1 must be present for QEMU to open the device."),
    Requirement("no-known-blockers", "No known platform blocker in the kernel log",
                "Broken DMAR/IVRS tables and missing interrupt remapping block or weaken passthrough in ways "
                "the other checks cannot see."),
    Requirement("vfio-ids-scope", "vfio-pci.ids claims only devices meant for VMs",
                "vfio-pci.ids binds every device of a model at boot; a same-model device the host needs "
                "(its boot NVMe, its NIC) would vanish from the host.", RECOMMENDED),
    Requirement("no-unsafe-overrides", "No setting that switches VFIO isolation off",
                "allow_unsafe_interrupts, enable_unsafe_noiommu_mode and relax_rmrr make a device assignable "
                "by giving up the protection passthrough relies on."),
    Requirement("cmdline-no-foreign-iommu-args", "No invalid IOMMU argument of the other CPU vendor",
                "amd_iommu=on on an Intel host does nothing, is rejected by the kernel, and suggests the "
                "command line was copied without being understood.", RECOMMENDED),
    Requirement("no-rmrr-lockout", "Device not locked by a firmware RMRR",
                "A device whose IOMMU group holds a firmware RMRR (a 'direct' reserved region) must stay "
                "identity-mapped: VFIO refuses it when the VM starts (HPE ProLiant Gen8/Gen9 slots, NICs, "
                "Smart Array).", scope=DEVICE),
    Requirement("numa-placement", "VM pinned to the NUMA node of its device",
                "On a multi-socket host every DMA and interrupt of a device whose VM runs on the other socket "
                "crosses the socket link.", RECOMMENDED, DEVICE),
    Requirement("device-present", "Device present with the expected identity",
                "A wrong address or a swapped card would hand the wrong device to a VM.", scope=DEVICE),
    Requirement("device-not-used-by-host", "Device not in use by the host",
                "Taking a device the host is using (mounted filesystem, swap, LVM, the SSH NIC) "
                "crashes services or loses data.", scope=DEVICE),
    Requirement("iommu-group-clean", "Device sits in a clean IOMMU group",
                "VFIO assigns whole groups: every other endpoint in the group must also be given to "
                "the same VM or be left without a host driver.", scope=DEVICE),
    Requirement("bound-to-vfio", "Device bound to vfio-pci",
                "A device on its host driver is used by the host; QEMU can only take it from vfio-pci.", scope=DEVICE),
    Requirement("vfio-binding-persistent", "vfio-pci binding survives a reboot",
                "A binding made by hand in sysfs is gone after the next boot, and the host driver "
                "then grabs (and may mount) the device.", scope=DEVICE),
    Requirement("assigned-to-vm", "Device assigned to its VM and to no other",
                "The VM that needs the device must have it, and two VMs must never claim one device.", scope=DEVICE),
    Requirement("host-device-kept", "Host-owned device stays with the host",
                "Devices the profile keeps on the host must not be bound to vfio-pci or given to a VM.", scope=DEVICE),
    Requirement("disk-present", "Disk present by its stable id",
                "Disks are passed by /dev/disk/by-id so that the right disk reaches the VM after renumbering.", scope=DISK),
    Requirement("disk-not-used-by-host", "Disk not used by the host",
                "A disk mounted, used as swap, or part of LVM or md on the host would be corrupted by a VM.", scope=DISK),
    Requirement("disk-assigned-to-vm", "Disk attached to its VM and to no other",
                "Two VMs writing one block device corrupt it; the VM that needs it must have it.", scope=DISK),
    Requirement("no-drift", "Host unchanged since go-live (--baseline)",
                "A host that passed at go-live can drift: a card moved, a driver rebound, a VM definition or "
                "the kernel command line edited, a firmware update. Checked only when --baseline is given: "
                "the host's command line, kernel and firmware, and each profiled device and disk."),
]

CATALOG: dict[str, Requirement] = {r.id: r for r in _ALL}
