"""PCI devices of the profile: found, unused by the host, isolated, bound to vfio-pci."""

from iommu_audit.facts import HostFacts
from iommu_audit.parsers import cmdline
from iommu_audit.parsers.modules import DRIVERCTL_RULE, OWN_RULE, driverctl_appliers, modprobe_vfio_ids
from iommu_audit.pci import addresses_in
from iommu_audit.profile import Device, Profile
from iommu_audit.rules.usage import pci_usage
from iommu_audit.verdict import Verdict, failed, not_applicable, passed

VFIO = "vfio-pci"
# Drivers the kernel's VFIO viability rule accepts for other members of a group.
_VIABLE_DRIVERS = {VFIO, "pci-stub"}


def locate(facts: HostFacts, device: Device) -> str | None:
    """The PCI address of a profile device on this host, or None."""
    if device.address:
        return device.address if device.address in facts.pci else None
    if device.slot:
        found = slot_candidates(facts, device)
        if len(found) == 1:  # several (a 4-drive card): the address must say which one
            return found[0]
    return None


def slot_candidates(facts: HostFacts, device: Device) -> list[str]:
    return [a for a in _addresses_of_id(facts).get(device.id, []) if in_slot(facts, a, device.slot)]


def _addresses_of_id(facts: HostFacts) -> dict[str, list[str]]:
    def index():
        out: dict[str, list[str]] = {}
        for a, d in sorted(facts.pci.items()):
            out.setdefault(d.id, []).append(a)
        return out
    return facts.memo("addresses_of_id", index)


def in_slot(facts: HostFacts, addr: str, slot: str) -> bool:
    """True if the function sits in the slot, directly or behind a switch on the card in it."""
    slot_addr = facts.slots.get(slot)
    if not slot_addr or addr not in facts.pci:
        return False
    return any(a.startswith(slot_addr + ".") for a in addresses_in(facts.pci[addr].path))


def profile_entries_at(facts: HostFacts, profile: Profile) -> dict[str, list[Device]]:
    """{address: every profile device located there}, computed once per host and profile."""
    return _profile_index(facts, profile)[0]


def passthrough_addresses(facts: HostFacts, profile: Profile) -> dict[str, Device]:
    """{address: device} for every located passthrough device."""
    return _profile_index(facts, profile)[1]


def _profile_index(facts: HostFacts, profile: Profile):
    def index():
        at: dict[str, list[Device]] = {}
        for d in profile.devices:
            addr = locate(facts, d)
            if addr:
                at.setdefault(addr, []).append(d)
        passthrough = {addr: next(d for d in ds if d.vm) for addr, ds in at.items() if any(d.vm for d in ds)}
        return profile, at, passthrough
    key = ("profile_index", id(profile))
    if facts.memo(key, index)[0] is not profile:  # another profile object got the same id(): rebuild
        facts._memo.pop(key)
    return facts.memo(key, index)[1:]


def _where(device: Device) -> str:
    parts = [f"address {device.address}" if device.address else "", f"slot {device.slot}" if device.slot else ""]
    return ", ".join(p for p in parts if p)


def _missing(device: Device) -> Verdict:
    return not_applicable(f"{device.name} not found ({_where(device)}): see device-present")


def device_present(facts: HostFacts, device: Device, profile: Profile) -> Verdict:
    addr = locate(facts, device)
    same_model = _addresses_of_id(facts).get(device.id, [])
    in_the_slot = slot_candidates(facts, device) if addr is None and device.slot and not device.address else []
    if len(in_the_slot) > 1:
        return failed(f"slot {device.slot} holds several [{device.id}]: {', '.join(in_the_slot)}",
                      f"exactly one [{device.id}] in slot {device.slot}", "give the device's address in the profile")
    if addr is None:
        others = f"; [{device.id}] is at {', '.join(same_model)}" if same_model else f"; no [{device.id}] on this host"
        return failed(f"no device at {_where(device)}{others}", f"[{device.id}] at {_where(device)}",
                      "check that the card is seated and enabled in firmware, or correct the profile's address")
    dev = facts.pci[addr]
    if dev.id != device.id:
        return failed(f"{addr} is {dev.describe()}", f"[{device.id}] at {addr}",
                      "correct the profile, or check whether cards were moved between slots")
    ctrl = facts.nvme.get(addr)
    if device.serial and ctrl and ctrl.serial and ctrl.serial != device.serial:
        return failed(f"{addr} has serial {ctrl.serial}", f"serial {device.serial}",
                      "the drives were swapped or replaced: update the profile or reseat the drives")
    if device.slot and facts.slots.get(device.slot) and not in_slot(facts, addr, device.slot):
        return failed(f"{addr} is not in slot {device.slot} ({facts.slots[device.slot]})",
                      f"[{device.id}] in slot {device.slot}", "correct the profile's slot or address")
    twins = [d for d in profile_entries_at(facts, profile).get(addr, []) if d.name != device.name]
    if twins:
        # Two entries for one function: one VM (or the host) would get it, the other's checks pass on it too.
        names = ", ".join(f"{d.name} ({_where(d)})" for d in twins)
        return failed(f"{addr} is also the profile's {names}: two profile entries for one function",
                      f"one profile entry per PCI function", f"remove {device.name} or {twins[0].name} from the profile, "
                      "or correct the address/slot of the one that means another card")
    notes = []
    if device.serial and not (ctrl and ctrl.serial):
        notes.append(f"serial not readable while on driver {dev.driver or '(none)'}")
    return passed(f"{dev.describe()}" + (f", serial {ctrl.serial}" if ctrl and ctrl.serial else ""), notes)


def device_not_used_by_host(facts: HostFacts, device: Device) -> Verdict:
    addr = locate(facts, device)
    if addr is None:
        return _missing(device)
    uses, notes = pci_usage(facts, addr)
    if uses:
        return failed("; ".join(uses), f"{addr} unused by the host",
                      "move the data and services off this device (unmount, swapoff, remove from LVM/md and "
                      "/etc/fstab, move the route and SSH access to another NIC) before passing it to a VM", notes)
    return passed(f"no mounted filesystem, swap, LVM/md, fstab entry, route or SSH session on {addr}", notes)


def iommu_group_clean(facts: HostFacts, device: Device, profile: Profile) -> Verdict:
    addr = locate(facts, device)
    if addr is None:
        return _missing(device)
    group = facts.pci[addr].iommu_group
    if group is None:
        return failed(f"{addr} is in no IOMMU group", "the device in an IOMMU group",
                      "make the IOMMU active first (see iommu-active)")
    wanted = passthrough_addresses(facts, profile)
    members = facts.groups.get(group, [addr])
    unreadable = facts.libvirt_source == "error" or any(d.error for d in facts.domains)
    bad, elsewhere = [], set()
    for m in members:
        if m == addr:
            continue
        other = facts.pci.get(m)
        if other is None or other.is_bridge:
            continue
        peer = wanted.get(m)
        # A group is one VFIO container, so one VM: a member in another VM's definition splits it.
        in_vms = sorted({dom.name for dom, _ in facts.hostdev_users(m)} - {device.vm})
        elsewhere.update(in_vms)
        if peer is not None and peer.vm != device.vm:
            bad.append(f"{other.describe()} goes to VM {peer.vm}")
            elsewhere.add(peer.vm)
        elif in_vms:
            bad.append(f"{other.describe()} is a <hostdev> of VM {', '.join(in_vms)}")
        elif peer is None and other.driver and other.driver not in _VIABLE_DRIVERS and "vfio" not in other.driver:
            bad.append(other.describe())
        elif peer is None and other.driver and unreadable:
            bad.append(f"{other.describe()}, and the VM definitions that may hold it could not be read")
    listing = [f"group {group}: " + ", ".join(facts.pci[m].describe() if m in facts.pci else m for m in members)]
    if bad:
        split = f" (a group goes to one VM only; also in {', '.join(sorted(elsewhere))})" if elsewhere else ""
        return failed(f"IOMMU group {group} also holds: " + "; ".join(bad) + split,
                      f"every other endpoint of group {group} unbound, on vfio-pci/pci-stub, or passed to {device.vm} "
                      "and to no other VM",
                      f"pass every endpoint of group {group} to {device.vm} only (or leave it without a host driver), "
                      "or move the card to a slot whose root port isolates it (ACS); never rely on pcie_acs_override",
                      listing)
    return passed(f"IOMMU group {group} is clean ({len(members)} member(s))", listing)


def bound_to_vfio(facts: HostFacts, device: Device) -> Verdict:
    addr = locate(facts, device)
    if addr is None:
        return _missing(device)
    dev = facts.pci[addr]
    if dev.driver == VFIO:
        return passed(f"{addr} is bound to vfio-pci")
    return failed(f"{addr} is bound to {dev.driver or 'no driver'}", f"{addr} bound to vfio-pci",
                  f"driverctl set-override {addr} vfio-pci (binds now and at every boot)")


def boot_id_claims(facts: HostFacts, pending: bool = False) -> list[tuple[str, str]]:
    """(vendor:device, where) for every ID vfio-pci will claim at the next boot; with pending, also
    IDs only in a config file that was not regenerated yet (the next update-grub applies them)."""
    # Once a boot loader config was generated, only what is in it takes effect.
    sources = [(w, line) for w, line in facts.boot_sources()
               if pending or w.startswith("/boot/") or not facts.generated_boot()]
    claims = [(i, where) for where, line in sources for i in cmdline.vfio_pci_ids(cmdline.params(line))]
    if "vfio_pci" not in facts.modules.builtin:  # a built-in vfio_pci never reads modprobe.d
        claims += [(i, line.path) for i, line in modprobe_vfio_ids(facts.modprobe)]
    return claims


def vfio_claims(facts: HostFacts, addr: str) -> list[str]:
    """What makes vfio-pci take the device at boot (driverctl, vfio-pci.ids)."""
    dev = facts.pci[addr]
    claims = []
    if facts.driverctl.get(addr) == VFIO:
        claims.append(f"driverctl override /etc/driverctl.d/pci-{addr}")
    claims += [f"vfio-pci.ids={dev.id} in {where}" for i, where in boot_id_claims(facts) if i == dev.id]
    return claims


def vfio_binding_persistent(facts: HostFacts, device: Device) -> Verdict:
    addr = locate(facts, device)
    if addr is None:
        return _missing(device)
    claims = vfio_claims(facts, addr)
    unapplied = ""
    if facts.driverctl.get(addr) == VFIO:
        # A driverctl.d file is only read at boot by driverctl's udev rule + unit, or by ours.
        appliers, why_not = driverctl_appliers(facts.binders)
        if appliers:
            claims[0] += f" (applied at boot by {appliers[0]})"
        else:
            unapplied = (f"/etc/driverctl.d/pci-{addr} says vfio-pci, but nothing applies it at boot: "
                         + "; ".join(why_not))
            claims.pop(0)
    managed = [f"libvirt managed='yes' in VM {dom.name} (detached when it starts)"
               for dom, hd in facts.hostdev_users(addr)
               if hd.managed and dom.name == device.vm and hd not in dom.hot_plugged]  # the next start's definition
    notes = []
    if managed and not claims:
        notes.append("only libvirt binds it: from boot until the VM starts the host driver owns the device "
                     "(and may activate LVM/md on it); a driverctl override closes that window")
    if any("/modprobe.d/" in c for c in claims) and not any(
            ml.words[:1] == ("softdep",) and "pre:" in ml.words and
            any(w.replace("_", "-") == "vfio-pci" for w in ml.words) for ml in facts.modprobe):
        notes.append("modprobe.d ids= only win if vfio-pci loads before the host driver: add "
                     "'softdep <driver> pre: vfio-pci' and rebuild the initramfs")
    if claims or managed:
        return passed("; ".join(claims + managed), notes + ([unapplied] if unapplied else []))
    if unapplied:
        return failed(unapplied, f"a udev rule that applies /etc/driverctl.d at boot ({DRIVERCTL_RULE} with "
                      f"driverctl@.service, or {OWN_RULE}), not masked",
                      f"install driverctl (apt/dnf install driverctl) and remove any mask of its rule, or run "
                      f"fixes/vfio-binding-persistent.sh {addr} (writes /etc/udev/rules.d/{OWN_RULE})")
    dev = facts.pci[addr]
    now = f" (driver_override={dev.driver_override} is set now, but lost at reboot)" if dev.driver_override else ""
    if "vfio_pci" in facts.modules.builtin:
        ignored = [line.path for i, line in modprobe_vfio_ids(facts.modprobe) if i == dev.id]
        if ignored:
            now += (f"; 'options vfio-pci ids={dev.id}' in {ignored[0]} is ignored: vfio_pci is built into this "
                    "kernel, so it only reads vfio-pci.ids= from the kernel command line")
    return failed(f"nothing binds {addr} to vfio-pci at boot{now}",
                  "a driverctl override, vfio-pci.ids in the boot configuration or modprobe.d, or libvirt managed='yes'",
                  f"driverctl set-override {addr} vfio-pci")


def host_device_kept(facts: HostFacts, device: Device) -> Verdict:
    addr = locate(facts, device)
    if addr is None:
        return _missing(device)
    dev = facts.pci[addr]
    problems = []
    if dev.driver in _VIABLE_DRIVERS:
        problems.append(f"bound to {dev.driver}")
    problems += vfio_claims(facts, addr)
    problems += [f"passed to VM {dom.name}" for dom, _ in facts.hostdev_users(addr)]
    if problems:
        return failed(f"{addr}: " + "; ".join(problems), f"{addr} on its host driver and in no VM",
                      f"driverctl unset-override {addr}, remove it from vfio-pci.ids and from the VM definitions")
    return passed(f"{dev.describe()}, in no VM")
