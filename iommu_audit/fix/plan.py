"""One plan per host, computed from the audit's own verdicts: what --fix will change, in order.

Every decision here reuses a rule from iommu_audit/rules (the guards too: a device the host
uses, an unclean IOMMU group): a plan never disagrees with the audit about what fails.
Steps name the script that carries them out (fixes/<requirement>.sh) and its arguments;
steps that software cannot take are listed as manual, refused or waiting, never dropped.
"""

import base64
import hashlib
import re
from dataclasses import asdict, dataclass, field

from iommu_audit.facts import HostFacts
from iommu_audit.fix import bootconfig
from iommu_audit.parsers import cmdline
from iommu_audit.parsers.modules import DRIVERCTL_RULE, DRIVERCTL_UNIT, OWN_RULE, driverctl_appliers, modprobe_vfio_ids
from iommu_audit.profile import Device, Disk, Profile
from iommu_audit.rules import devices, disks, firmware, kernel, overrides, vms
from iommu_audit.verdict import Verdict

# The only shape of PCI address that may reach a command (the brief's pattern, no VMD domains).
ADDRESS = re.compile(r"^[0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]$")
CHANGE, MANUAL, REFUSED, WAITING = "change", "manual", "refused", "waiting"
# fixes/initramfs.sh's tools, in the order it runs them (proxmox-boot-tool copies the new images to the ESPs).
INITRAMFS_TOOLS = {"update-initramfs": "update-initramfs -u -k all", "dracut": "dracut -f --regenerate-all",
                   "proxmox-boot-tool": "proxmox-boot-tool refresh"}


class PlanError(ValueError):
    """A value that must never reach a command (the message names it)."""


def checked_address(addr: str) -> str:
    if not ADDRESS.match(addr or ""):
        raise PlanError(f"{addr!r} is not a PCI address of the form DDDD:BB:DD.F: refusing to pass it to a command")
    return addr


@dataclass
class FileChange:
    path: str
    old: str
    new: str

    @property
    def sha256(self) -> str:
        # As fixes/lib.sh hashes the file on the host: its text without trailing newlines (the
        # probe's copy loses them too). Any other difference makes the script refuse the write.
        return hashlib.sha256(self.old.rstrip("\n").encode()).hexdigest()

    def diff(self) -> list[str]:
        import difflib
        return list(difflib.unified_diff(self.old.splitlines(), self.new.splitlines(), f"{self.path} (now)",
                                         f"{self.path} (after)", lineterm="", n=0))[2:]

    def args(self) -> list[str]:
        content = self.new.rstrip("\n") + "\n"
        return ["--file", self.path, "--sha256", self.sha256, "--content", base64.b64encode(content.encode()).decode()]


@dataclass
class Step:
    requirement: str  # the script fixes/<requirement>.sh, or the requirement a manual step is about
    subject: str  # device/disk name, or the host
    summary: str
    kind: str = CHANGE
    args: list[str] = field(default_factory=list)
    commands: list[str] = field(default_factory=list)  # what the script will run, for the reader
    files: list[FileChange] = field(default_factory=list)
    repairs: list[str] = field(default_factory=list)  # requirement ids this step makes pass
    reboot: bool = False  # takes effect at the next boot only
    status: str = "planned"  # planned | done | failed | rolled-back | not-run
    output: str = ""

    @property
    def script(self) -> str:
        return f"fixes/{self.requirement}.sh"

    def record(self) -> dict:
        d = asdict(self)
        d["files"] = [{"path": f.path, "diff": f.diff()} for f in self.files]
        d["args"] = [a if len(a) < 200 else a[:40] + "..." for a in self.args]
        return d


@dataclass
class HostPlan:
    host: str
    steps: list[Step]
    failing: dict[str, str]  # "requirement[subject]": what the audit found, when planned

    @property
    def changes(self) -> list[Step]:
        return [s for s in self.steps if s.kind == CHANGE]

    @property
    def reboot_required(self) -> bool:
        return any(s.reboot for s in self.changes)


def plan_host(facts: HostFacts, profile: Profile, *, detach: bool = False) -> HostPlan:
    p = _Planner(facts, profile, detach)
    return HostPlan(facts.name, p.steps(), p.failing)


class _Planner:
    def __init__(self, facts: HostFacts, profile: Profile, detach: bool):
        self.f, self.p, self.may_detach = facts, profile, detach
        self.failing: dict[str, str] = {}

    def verdict(self, req: str, subject: str, v: Verdict) -> Verdict:
        if not v.ok:
            self.failing[f"{req}[{subject}]"] = v.found
        return v

    def steps(self) -> list[Step]:
        f, p, host = self.f, self.p, self.f.name
        out: list[Step] = []
        for req, v in (("firmware-iommu", firmware.firmware_iommu(f, p)),
                       ("interrupt-remapping", kernel.interrupt_remapping(f, p)),
                       ("no-known-blockers", kernel.no_known_blockers(f, p)),
                       ("no-unsafe-overrides", overrides.no_unsafe_overrides(f, p))):
            if not self.verdict(req, host, v).ok:
                hint = p.firmware_hint if req == "firmware-iommu" and p.firmware_hint else v.fix
                out.append(Step(req, host, f"{v.found}: {hint}", MANUAL))
        ids_scope = self.verdict("vfio-ids-scope", host, kernel.vfio_ids_scope(f, p))
        out += self.boot(not ids_scope.ok)
        active = self.verdict("iommu-active", host, kernel.iommu_active(f, p)).ok
        mods = self.verdict("vfio-modules", host, kernel.vfio_modules(f, p))
        if not mods.ok:
            missing = [m for m in kernel.VFIO_MODULES if not f.modules.active(m)]
            # A blacklist/install line keeps VFIO from loading at boot whatever fixes/vfio-modules.sh writes.
            if missing and all(m in f.modules.on_disk for m in missing) and not kernel.vfio_load_blockers(f):
                out.append(Step("vfio-modules", host, f"load {', '.join(missing)} now and at every boot",
                                commands=[f"modprobe {m}" for m in missing if m != "vfio"] +
                                ["write /etc/modules-load.d/vfio-pci.conf"],
                                repairs=["vfio-modules"]))
            else:
                out.append(Step("vfio-modules", host, f"{mods.found}: {mods.fix}", MANUAL))
        if not ids_scope.ok:
            out += self.modprobe_ids()
        if any(s.kind == CHANGE and s.requirement in ("vfio-modules", "vfio-ids-scope") for s in out):
            out += self.initramfs()
        for d in p.host_devices:
            out += self.host_device(d)
        binds, persists, assigns = [], [], []
        bound_here: set[str] = set()
        for d in p.passthrough_devices:
            b, s, a = self.device(d, active, not ids_scope.ok, bound_here)
            binds += b
            persists += s
            assigns += a
        out += binds + persists + assigns
        for d in p.disks:
            out += self.disk(d)
        return out

    # --- boot configuration -------------------------------------------------------------------
    def boot(self, drop_ids: bool) -> list[Step]:
        f, p, host = self.f, self.p, self.f.name
        iommu = self.verdict("cmdline-iommu", host, kernel.cmdline_iommu(f, p))
        acs = self.verdict("cmdline-no-acs-override", host, kernel.cmdline_no_acs_override(f, p))
        persistent = self.verdict("cmdline-persistent", host, kernel.cmdline_persistent(f, p))
        running = bootconfig.needed(f.params, p, drop_ids)
        sources = f.boot_sources()
        next_boot = [bootconfig.needed(cmdline.params(line), p, drop_ids) for _, line in sources]
        if persistent.ok and not any(next_boot):
            if not iommu.ok or not acs.ok:  # boot config is right already: only the reboot is missing
                return [Step("cmdline-iommu", host, "the boot configuration is right; reboot to apply it "
                             f"(running kernel: {iommu.found if not iommu.ok else acs.found})", MANUAL, reboot=True)]
            return []
        add = tuple(dict.fromkeys(a for e in next_boot + [running] for a in e.add))
        remove = tuple(dict.fromkeys(r for e in next_boot + [running] for r in e.remove))
        edit = bootconfig.Edit(add, remove)
        files = dict(f.boot_files)
        gen = [w for w, _ in f.boot_generated]
        bls = any("/loader/entries/" in w for w in gen)
        grub_cfg = next((w for w in gen if w.endswith("/grub.cfg")), "")
        repairs = ["cmdline-persistent"] + (["cmdline-iommu"] if not iommu.ok else []) + \
            (["cmdline-no-acs-override"] if not acs.ok else []) + (["vfio-ids-scope"] if drop_ids else [])
        try:
            kernel_cmdline = []
            if "/etc/kernel/cmdline" in files:  # edited whenever present: the audit requires it to agree
                new = bootconfig.edit_kernel_cmdline(files["/etc/kernel/cmdline"], edit)
                kernel_cmdline = [bootconfig_change("/etc/kernel/cmdline", files["/etc/kernel/cmdline"], new)]
            if kernel_cmdline and not f.booted_by_grub():
                changes = kernel_cmdline
                how, regen = "kernel-cmdline", ["proxmox-boot-tool refresh (Proxmox) or kernel-install add <each kernel>"]
            else:
                changes = [bootconfig_change(path, files[path], text)
                           for path, text in bootconfig.edit_grub(f.boot_files, edit).items()] + kernel_cmdline
                if bls:
                    how, regen = "grubby", [_grubby(edit)]
                else:
                    how = "grub"
                    cfg = grub_cfg or "/boot/grub/grub.cfg"
                    regen = [f"update-grub (Debian/Ubuntu) or grub-mkconfig -o {cfg} / grub2-mkconfig -o {cfg}"]
        except ValueError as exc:  # unbalanced quotes in /etc/default/grub: a person must look
            return [Step("cmdline-persistent", host, f"cannot edit the boot configuration safely ({exc}): "
                         f"{persistent.fix}", MANUAL)]
        changes = [c for c in changes if c]
        if not changes and how != "grubby" and persistent.ok:
            return []
        if not changes and not f.boot_files:
            return [Step("cmdline-persistent", host, f"{persistent.found}: {persistent.fix}", MANUAL)]
        args = ["--boot", how, "--grub-cfg", grub_cfg or "/boot/grub/grub.cfg"]
        if how == "grubby":
            args += [x for a in add for x in ("--add", a)] + [x for r in remove for x in ("--remove", r)]
        for c in changes:
            args += c.args()
        words = (["add " + " ".join(add)] if add else []) + (["remove " + " ".join(remove)] if remove else [])
        return [Step("cmdline-persistent", host, f"kernel arguments for the next boot: {'; '.join(words)} "
                     "(reboot required)", args=args, files=changes, repairs=repairs, reboot=True,
                     commands=[f"write {c.path} (backup first)" for c in changes] + regen +
                     ["read the host again: the entry the boot loader boots must pass cmdline-persistent, "
                      "else this step is rolled back"])]

    def modprobe_ids(self) -> list[Step]:
        """Drop 'ids=' from 'options vfio-pci' lines; the per-address bindings are planned per device."""
        changed: dict[str, FileChange] = {}
        texts = dict(self.f.modprobe_files)
        for _, line in modprobe_vfio_ids(self.f.modprobe):
            if line.path in changed or line.path not in texts:
                continue
            old = texts[line.path]
            new = "\n".join(_drop_ids(ln) for ln in old.split("\n"))
            changed[line.path] = FileChange(line.path, old, new)
        if not changed and modprobe_vfio_ids(self.f.modprobe):
            paths = sorted({ln.path for _, ln in modprobe_vfio_ids(self.f.modprobe)})
            return [Step("vfio-ids-scope", self.f.name, f"remove ids= from 'options vfio-pci' in {', '.join(paths)} "
                         "and rebuild the initramfs (the per-address bindings below replace it)", MANUAL)]
        if not changed:
            return []
        args = [x for c in changed.values() for x in c.args()]
        return [Step("vfio-ids-scope", self.f.name, "drop the model-wide vfio-pci ids= (per-address bindings replace it)",
                     args=args, files=list(changed.values()), repairs=["vfio-ids-scope"], reboot=True,
                     commands=[f"write {p} (backup first)" for p in changed])]

    def initramfs(self) -> list[Step]:
        """One rebuild after the modprobe.d / modules-load.d changes, with the tools the probe found."""
        f = self.f
        found = f.system.get("boot_tools")
        tools = [t for t in INITRAMFS_TOOLS if t in (found or "").split()]
        if "update-initramfs" in tools and "dracut" in tools:  # the one the distribution uses; dracut can be extra
            tools.remove("dracut")
        if found is None:  # facts from a probe without the row: the tools are unknown
            return [Step("initramfs", f.name, "rebuild the initramfs so it holds the new modprobe.d/modules-load.d "
                         "(update-initramfs -u -k all, or dracut -f --regenerate-all; Proxmox: then "
                         "proxmox-boot-tool refresh)", MANUAL, reboot=True)]
        if not [t for t in tools if t != "proxmox-boot-tool"]:
            return []  # no initramfs generator on this host: nothing holds a copy
        return [Step("initramfs", f.name, "rebuild the initramfs of every kernel so it holds the new "
                     "modprobe.d/modules-load.d (used from the next boot)", args=tools,
                     commands=[INITRAMFS_TOOLS[t] for t in tools], reboot=True)]

    # --- PCI devices --------------------------------------------------------------------------
    def device(self, d: Device, iommu_ready: bool, ids_going: bool, bound_here: set[str]):
        f = self.f
        present = self.verdict("device-present", d.name, devices.device_present(f, d, self.p))
        if not present.ok:
            return [Step("device-present", d.name, f"{present.found}: {present.fix}", MANUAL)], [], []
        addr = checked_address(devices.locate(f, d))
        rmrr = self.verdict("no-rmrr-lockout", d.name, firmware.no_rmrr_lockout(f, d))
        if not rmrr.ok and not rmrr.skip:  # the kernel would refuse the device to VFIO: a firmware matter
            return [Step("no-rmrr-lockout", d.name, f"{rmrr.found}: {rmrr.fix}", MANUAL)], [], []
        used = self.verdict("device-not-used-by-host", d.name, devices.device_not_used_by_host(f, d))
        group = self.verdict("iommu-group-clean", d.name, devices.iommu_group_clean(f, d, self.p))
        bound = self.verdict("bound-to-vfio", d.name, devices.bound_to_vfio(f, d))
        persistent = self.verdict("vfio-binding-persistent", d.name, devices.vfio_binding_persistent(f, d))
        assigned = self.verdict("assigned-to-vm", d.name, vms.assigned_to_vm(f, d))
        wants_persist = not persistent.ok or (ids_going and f.driverctl.get(addr) != devices.VFIO)
        binds, persists, assigns = [], [], []
        if not used.ok and (not bound.ok or wants_persist):
            return [Step("bound-to-vfio", d.name, f"refused: {addr} is used by the host: {used.found}", REFUSED)], [], []
        if not group.ok and not bound.ok:
            return [Step("iommu-group-clean", d.name, f"{group.found}: {group.fix}", MANUAL)], [], []
        if not bound.ok and addr not in bound_here:
            # VFIO hands over whole groups: bind the group's endpoints for the same VM in one step.
            together = sorted(a for a, other in devices.passthrough_addresses(f, self.p).items()
                              if other.vm == d.vm and f.pci[a].iommu_group == f.pci[addr].iommu_group
                              and f.pci[a].driver != devices.VFIO)
            together = [checked_address(a) for a in together] or [addr]
            bound_here.update(together)
            names = ", ".join(f"{a} ({f.pci[a].driver or 'no driver'})" for a in together)
            step = Step("bound-to-vfio", d.name, f"bind {names} to vfio-pci now", args=together,
                        commands=[f"echo vfio-pci > /sys/bus/pci/devices/{a}/driver_override; unbind; "
                                  f"echo {a} > /sys/bus/pci/drivers_probe; verify driver" for a in together],
                        repairs=["bound-to-vfio"])
            if not iommu_ready:
                step.kind, step.summary = WAITING, step.summary + ": waits for the reboot that turns the IOMMU on " \
                                                                  "(run --fix again after it)"
            binds.append(step)
        if wants_persist:
            persists.append(self.persist(d, addr))
        if not assigned.ok and not assigned.skip:
            assigns += self.assign(d, addr, assigned)
        return binds, persists, assigns

    def persist(self, d: Device, addr: str) -> Step:
        """As fixes/vfio-binding-persistent.sh decides on the host: driverctl where its udev rule and unit
        apply /etc/driverctl.d at boot (the audit's driverctl_appliers), else our own udev rule."""
        usable, why_not = driverctl_appliers(self.f.binders)
        rule = f"/etc/udev/rules.d/{OWN_RULE}"
        ours = "/etc/driverctl.d/pci-" + addr + f" + {rule} (applies it at boot)"
        if any(a.startswith("driverctl's") for a in usable):
            return Step("vfio-binding-persistent", d.name, f"bind {addr} to vfio-pci at every boot: driverctl "
                        "set-override (never vfio-pci.ids)", args=[addr],
                        commands=[f"driverctl set-override {addr} vfio-pci (if driverctl is not installed: {ours})"],
                        repairs=["vfio-binding-persistent"])
        installed = any(b.path.endswith(("/" + DRIVERCTL_RULE, "/" + DRIVERCTL_UNIT)) for b in self.f.binders)
        driverctl = why_not[0] + " (left as it is)" if installed else "driverctl is not installed"
        masked = next((b.why_not() for b in self.f.binders if b.path == rule and b.why_not()), "")
        if masked:
            return Step("vfio-binding-persistent", d.name, f"refused: {driverctl}, and {masked}: nothing would apply "
                        f"/etc/driverctl.d/pci-{addr} at boot; remove one of the masks, then run --fix again", REFUSED)
        return Step("vfio-binding-persistent", d.name, f"bind {addr} to vfio-pci at every boot with our udev rule, "
                    f"because {driverctl} (never vfio-pci.ids)", args=[addr], commands=[f"write {ours}"],
                    repairs=["vfio-binding-persistent"])

    def assign(self, d: Device, addr: str, v: Verdict) -> list[Step]:
        problem = vms.libvirt_unusable(self.f, d.vm)
        if problem:
            return [Step("assigned-to-vm", d.name, f"{problem.found}: {problem.fix}", MANUAL)]
        users = {dom.name for dom, _ in self.f.hostdev_users(addr)}
        # Its own VM must hold it in the persistent definition (a hot-plug is gone at the next start).
        defined = {dom.name for dom, hd in self.f.hostdev_users(addr) if hd not in dom.hot_plugged}
        out = []
        if d.vm not in defined:
            out.append(Step("assigned-to-vm", d.name, f"add <hostdev managed='yes'> {addr} to {d.vm}'s persistent "
                            "definition (a running VM gets it at its next start)", args=[d.vm, addr],
                            commands=[f"virsh attach-device {d.vm} <hostdev {addr}> --config"],
                            repairs=["assigned-to-vm"]))
        out += self.detach_steps(d.name, addr, sorted(users - {d.vm}))
        for dom, src, name in self.f.disk_sources():  # a VM given a disk on this controller reaches it too
            if self.f.block[name].pci_address == addr:
                out.append(Step("assigned-to-vm", d.name, f"{dom.name} has {src}, a disk on {addr}: remove it by "
                                f"hand (virsh detach-disk {dom.name} {src} --config)", MANUAL))
        return out

    def detach_steps(self, subject: str, addr: str, others: list[str]) -> list[Step]:
        out = []
        for vm in others:
            if self.may_detach:
                out.append(Step("assigned-to-vm", subject, f"remove {addr} from {vm} (--fix-detach)",
                                args=["--detach", vm, addr],
                                commands=[f"virsh detach-device {vm} <hostdev {addr}> --config"]))
            else:
                out.append(Step("assigned-to-vm", subject, f"{addr} is also defined in {vm}: --fix never takes a "
                                f"device away from a VM unless --fix-detach is given "
                                f"(virsh detach-device {vm} <hostdev {addr}> --config)", MANUAL))
        return out

    def host_device(self, d: Device) -> list[Step]:
        f = self.f
        present = self.verdict("device-present", d.name, devices.device_present(f, d, self.p))
        if not present.ok:
            return [Step("device-present", d.name, f"{present.found}: {present.fix}", MANUAL)]
        kept = self.verdict("host-device-kept", d.name, devices.host_device_kept(f, d))
        if kept.ok:
            return []
        addr = checked_address(devices.locate(f, d))
        dev = f.pci[addr]
        out = []
        running = sorted({dom.name for dom, _ in f.hostdev_users(addr) if dom.running})
        if running and dev.driver == devices.VFIO:  # unbinding it would block until that VM lets go
            out.append(Step("host-device-kept", d.name, f"refused: {addr} is in use by the running VM "
                            f"{', '.join(running)}: shut it down, then run --fix again", REFUSED))
        elif dev.driver in ("vfio-pci", "pci-stub") or f.driverctl.get(addr) or dev.driver_override:
            out.append(Step("host-device-kept", d.name, f"give {addr} back to the host: drop its override, "
                            "rebind it to its own driver", args=[addr],
                            commands=[f"driverctl unset-override {addr} or remove /etc/driverctl.d/pci-{addr}",
                                      f"echo > driver_override; unbind from {dev.driver}; drivers_probe; verify"],
                            repairs=["host-device-kept"]))
        if any(i == dev.id for i, _ in devices.boot_id_claims(f, pending=True)):
            out.append(Step("vfio-ids-scope", d.name, f"vfio-pci.ids={dev.id} claims {addr} at boot: see the "
                            "vfio-ids-scope step (ids= removed, per-address bindings instead)", MANUAL))
        out += self.detach_steps(d.name, addr, sorted({dom.name for dom, _ in f.hostdev_users(addr)}))
        return out

    # --- whole disks --------------------------------------------------------------------------
    def disk(self, d: Disk) -> list[Step]:
        f = self.f
        present = self.verdict("disk-present", d.name, disks.disk_present(f, d))
        if not present.ok:
            return [Step("disk-present", d.name, f"{present.found}: {present.fix}", MANUAL)]
        assigned = self.verdict("disk-assigned-to-vm", d.name, disks.disk_assigned_to_vm(f, d))
        if assigned.ok:
            return []
        used = self.verdict("disk-not-used-by-host", d.name, disks.disk_not_used_by_host(f, d))
        if not used.ok:
            return [Step("disk-assigned-to-vm", d.name, f"refused: {d.path} is used by the host: {used.found}", REFUSED)]
        problem = vms.libvirt_unusable(f, d.vm)
        if problem:
            return [Step("disk-assigned-to-vm", d.name, f"{problem.found}: {problem.fix}", MANUAL)]
        # The audit's routes: every <disk> source (block or file) on the disk or a partition, a <hostdev> of its controller.
        r = disks.disk_routes(f, d.vm, f.by_id[d.by_id])
        mine, unstable = r.mine, r.unstable  # a hot-plug alone (r.live_only) is gone at the VM's next start
        out = []
        if len(unstable) == len(mine):
            out.append(Step("disk-assigned-to-vm", d.name, f"add <disk type='block'> {d.path} to {d.vm}'s persistent "
                            "definition", args=[d.vm, d.path], commands=[f"virsh attach-device {d.vm} "
                                                                          f"<disk {d.path}, next free vdX> --config"],
                            repairs=["disk-assigned-to-vm"]))
        if unstable:
            out.append(Step("disk-assigned-to-vm", d.name, f"{d.vm} also names the disk by {', '.join(unstable)}: remove "
                            "that entry by hand (virsh edit) once the stable one is in", MANUAL))
        for vm, src in r.extra:
            out.append(Step("disk-assigned-to-vm", d.name, f"{vm} also reaches {d.path} through {src}: --fix never "
                            f"takes a disk away from a VM (virsh detach-disk {vm} <target> --config)", MANUAL))
        return out


def boot_unmet(facts: HostFacts, profile: Profile, drop_ids: bool) -> str:
    """After a cmdline-persistent step, on facts read again: what the next boot still lacks ("" when
    nothing), judged as the audit judges it: the grub.cfg entry grub boots (every kernel entry when
    that is unknown), the default BLS entry, the files. The step's script cannot tell which entry boots."""
    v = kernel.cmdline_persistent(facts, profile)
    if not v.ok:
        return v.found
    left = []
    for where, line in facts.boot_sources():
        e = bootconfig.needed(cmdline.params(line), profile, drop_ids)
        if e:
            left.append(f"{where}: " + "; ".join((["lacks " + " ".join(e.add)] if e.add else []) +
                                                 (["still has " + " ".join(e.remove)] if e.remove else [])))
    return "; ".join(left)


def bootconfig_change(path: str, old: str, new: str) -> FileChange | None:
    return FileChange(path, old, new) if new != old else None


def _grubby(edit: bootconfig.Edit) -> str:
    parts = ["grubby --update-kernel=ALL"]
    if edit.add:
        parts.append(f"--args='{' '.join(edit.add)}'")
    if edit.remove:
        parts.append(f"--remove-args='{' '.join(edit.remove)}'")
    return " ".join(parts)


def _drop_ids(line: str) -> str:
    words = line.split()
    if len(words) >= 3 and words[0] == "options" and words[1].replace("_", "-") == "vfio-pci":
        kept = [w for w in words if not w.startswith("ids=")]
        return " ".join(kept) if len(kept) > 2 else "# " + line + "  # ids= removed by iommu-audit --fix"
    return line
