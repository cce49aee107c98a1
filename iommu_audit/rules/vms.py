"""libvirt: each passthrough device defined in its VM, and in no other."""

import shlex

from iommu_audit.facts import HostFacts
from iommu_audit.profile import Device
from iommu_audit.rules.devices import locate
from iommu_audit.verdict import Verdict, failed, not_applicable, passed


def libvirt_unusable(facts: HostFacts, vm: str) -> Verdict | None:
    """A failing verdict when VM definitions cannot be read, or when the VM is not defined."""
    if facts.libvirt_source == "none":
        return failed("libvirt is not installed (no virsh, no /etc/libvirt/qemu)", f"a libvirt domain {vm}",
                      "install libvirt (apt-get install libvirt-daemon-system libvirt-clients) and define the VMs")
    if facts.libvirt_source == "error":
        return failed(f"libvirt could not be read: {facts.libvirt_error}", f"a libvirt domain {vm}",
                      "start libvirtd, run the audit as root or with --sudo, or set LIBVIRT_DEFAULT_URI")
    broken = [d for d in facts.domains if d.error]
    if broken:
        # An unread definition may hold this very device: no verdict can be given without it.
        return failed(f"cannot read the definition of {', '.join(d.name for d in broken)}", f"a libvirt domain {vm}",
                      "run the audit as root or with --sudo (libvirt keeps definitions 0600), or fix the definition",
                      [f"{d.name}: {d.error}" for d in broken])
    if vm not in {d.name for d in facts.domains}:
        names = ", ".join(sorted(d.name for d in facts.domains)) or "none"
        return failed(f"no libvirt domain named {vm} (domains: {names})", f"a libvirt domain {vm}",
                      f"define {shlex.quote(vm)} (virsh define) or correct the profile's vm name")
    return None


def assigned_to_vm(facts: HostFacts, device: Device) -> Verdict:
    addr = locate(facts, device)
    if addr is None:
        return not_applicable(f"{device.name} not found: see device-present")
    problem = libvirt_unusable(facts, device.vm)
    if problem:
        return problem
    users = sorted({dom.name for dom, _ in facts.hostdev_users(addr)})
    others = [u for u in users if u != device.vm]
    # Its own VM must hold it in the persistent definition: a hot-plug alone is lost at the VM's restart.
    only_live = device.vm in users and all(hd in dom.hot_plugged for dom, hd in facts.hostdev_users(addr)
                                           if dom.name == device.vm)
    if only_live:
        users.remove(device.vm)
    # A VM given one of the controller's disks reaches the same hardware by another route.
    disk_routes = sorted({(dom.name, src) for dom, src, name in facts.disk_sources()
                          if facts.block[name].pci_address == addr})
    evidence = [facts.libvirt_note] if facts.libvirt_note else []
    if device.vm in users and not others and not disk_routes:
        return passed(f"{addr} is a <hostdev> of {device.vm} only", evidence)
    found = []
    if device.vm not in users:
        found.append(f"{device.vm} has {addr} only in the running VM's live definition (gone at its next start)"
                     if only_live else f"{device.vm} has no <hostdev> for {addr}")
    if others:
        found.append(f"{addr} is also defined in {', '.join(others)}")
    found += [f"{vm} has {src}, a disk on {addr}" for vm, src in disk_routes]
    fix = []
    if device.vm not in users:
        fix.append(f"virsh attach-device {shlex.quote(device.vm)} <hostdev-{addr}.xml> --config")
    fix += [f"virsh detach-device {shlex.quote(o)} <hostdev-{addr}.xml> --config" for o in others]
    fix += [f"virsh detach-disk {shlex.quote(vm)} {shlex.quote(src)} --config" for vm, src in disk_routes]
    return failed("; ".join(found), f"{addr} in {device.vm} and in no other VM, by no other route", "; ".join(fix),
                  evidence)
