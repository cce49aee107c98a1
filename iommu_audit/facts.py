"""Typed facts about one host, built from one run of the probe."""

from dataclasses import dataclass, field

from iommu_audit.pci import address_numbers
from iommu_audit.parsers import cmdline, dmesg, grub, libvirt, modules, platform, sections, storage, sysfs
from iommu_audit.parsers.platform import Platform


@dataclass
class HostFacts:
    name: str
    hostname: str
    kernel: str
    cpu_vendor: str  # "intel", "amd" or what /proc/cpuinfo said
    uid: str  # "" for a sysroot
    ssh_connection: str
    cmdline: str
    params: list[cmdline.Param]
    acpi_tables: list[str]
    iommu_class: list[str]
    groups: dict[str, list[str]]
    group_types: dict[str, str]
    pci: dict[str, sysfs.PciDevice]
    nvme: dict[str, sysfs.NvmeController]
    slots: dict[str, str]
    block: dict[str, storage.BlockDevice]
    btrfs: dict[str, list[str]]  # filesystem UUID -> member devices (a multi-device btrfs mounts by one)
    dev_links: dict[str, str]  # /dev/disk/by-*/..., /dev/mapper/... -> kernel name
    mounts: list[storage.Mount]
    boot_mounts: list[storage.BootMount]  # /etc/fstab and /etc/crypttab
    swaps: list[str]
    md_members: dict[str, str]
    network: sysfs.Network
    modules: modules.Modules
    modprobe: list[modules.ModprobeLine]
    driverctl: dict[str, str]
    boot_files: list[tuple[str, str]]
    boot_generated: list[tuple[str, str]]  # (grub.cfg, a menu line: parsers/grub.py) or (BLS entry, its options)
    interrupt_chips: list[str]
    dmesg_source: str
    dmesg_unreadable: str  # a log that exists but could not be read ("/dmesg": a directory, no permission)
    boot_log: bool  # dmesg still holds the boot messages
    dmesg: list[dmesg.Finding]
    libvirt_source: str  # virsh | files | error | none
    libvirt_error: str
    libvirt_note: str  # how the definitions were read when not through virsh, or ""
    domains: list[libvirt.Domain] = field(default_factory=list)
    # Reserved regions, NUMA nodes, vfio unsafe-mode parameters (parsers/platform.py).
    platform: Platform = field(default_factory=Platform)
    offline_copy: bool = False  # read from a --sysroot copy, not from a running host
    modprobe_files: list[tuple[str, str]] = field(default_factory=list)  # (path, text): what --fix edits
    # DMI sys_vendor/product_name/product_serial/bios_version/bios_date, cpu_model, os: for the report.
    system: dict[str, str] = field(default_factory=dict)
    # udev rules / unit that apply /etc/driverctl.d at boot, as found (parsers/modules.py: Binder).
    binders: list[modules.Binder] = field(default_factory=list)
    _memo: dict = field(default_factory=dict, init=False, repr=False, compare=False)  # replace() starts afresh

    def memo(self, key, compute):
        """compute() once per host: indexes the rules would otherwise rebuild for every device."""
        if key not in self._memo:
            self._memo[key] = compute()
        return self._memo[key]

    def findings(self, kind: str) -> list[dmesg.Finding]:
        return [f for f in self.dmesg if f.kind == kind]

    @property
    def by_id(self) -> dict[str, str]:
        """{by-id name: kernel name}: "wwn-0x5000c500b1c2d3e4" -> "sda"."""
        return {p[len(BY_ID):]: n for p, n in self.dev_links.items() if p.startswith(BY_ID)}

    def kernel_name(self, path: str) -> str | None:
        """The kernel name behind a device path or fstab spec (by-id, by-uuid, /dev/mapper, /dev/sdb1)."""
        path = storage.spec_path(path)
        if path in self.dev_links:
            return self.dev_links[path]
        if path.startswith("/dev/") and path.count("/") == 2:
            return path[len("/dev/"):]
        return None

    def hostdev_users(self, address: str) -> list[tuple[libvirt.Domain, libvirt.Hostdev]]:
        """Every libvirt domain whose definition passes the PCI function at address."""
        def index():
            users: dict = {}
            for dom in self.domains:
                for hd in dom.hostdevs:
                    users.setdefault(hd.address, []).append((dom, hd))
            return users
        return list(self.memo("hostdev_users", index).get(address_numbers(address), []))

    def disk_sources(self) -> list[tuple[libvirt.Domain, str, str]]:
        """(domain, source, kernel name) for every <disk> source (block or file) that is a host block device."""
        def index():
            return [(dom, src, name) for dom in self.domains for src in dom.block_disks + dom.file_disks
                    if (name := self.kernel_name(src)) in self.block]
        return list(self.memo("disk_sources", index))

    def boot_sources(self) -> list[tuple[str, str]]:
        """(where, command line) for each boot configuration the next boot depends on: the files
        an admin edits (/etc/default/grub with grub.d, or /etc/kernel/cmdline) and what the boot
        loader was generated with (the grub.cfg entry grub boots, the default BLS entry)."""
        return list(self.memo("boot_sources", self._boot_sources))

    def _boot_sources(self) -> list[tuple[str, str]]:
        files = dict(self.boot_files)
        env = {}
        grubenv = [p for p in ("/boot/grub2/grubenv", "/boot/grub/grubenv") if p in files]
        for path in grubenv:
            env.update(line.split("=", 1) for line in files[path].splitlines() if "=" in line and line[0] != "#")
        kernel_cmdline = [("/etc/kernel/cmdline", files["/etc/kernel/cmdline"].strip())] \
            if "/etc/kernel/cmdline" in files else []
        if kernel_cmdline and not self.booted_by_grub():
            # systemd-boot, kernel-install, proxmox-boot-tool: this file is what boots; grub is not used.
            return kernel_cmdline + self._bls(env)
        grub = [(p, t) for p, t in self.boot_files if p.startswith("/etc/default/grub")]
        out = [(", ".join(p for p, _ in grub), cmdline.grub_cmdline(grub))] if grub else []
        # grub booted this kernel, so its files decide the next boot; a present /etc/kernel/cmdline
        # (a leftover, or kernel-install's source for new BLS entries) must agree with them too.
        return out + self._grub_cfg(env, bool(grubenv)) + self._bls(env) + kernel_cmdline

    def booted_by_grub(self) -> bool:
        """grub passes BOOT_IMAGE= to every kernel it starts; systemd-boot and UKIs do not."""
        return cmdline.values(self.params, "BOOT_IMAGE") != []

    def _grub_cfg(self, env: dict[str, str], env_read: bool) -> list[tuple[str, str]]:
        """The entry grub.cfg boots (its default, grubenv saved_entry / next_entry); when that cannot be
        told, every entry with a kernel: each must then carry the arguments."""
        out = []
        for path in dict.fromkeys(p for p, _ in self.boot_generated if "/loader/entries/" not in p):
            menu = grub.menu([line for p, line in self.boot_generated if p == path])
            picks, unknown = grub.chosen(menu, env, env_read)
            if unknown:
                picks = [(name, e, f"which entry boots is unknown: {unknown}") for name, e in menu.entries()]
            # "linux /vmlinuz-6.1 root=... ro quiet $vt_handoff": drop the keyword, the image and grub variables.
            out += [(f"{path} entry '{name}' ({why})" if name else path,
                     " ".join(w for w in e.linux.split()[2:] if not w.startswith("$"))) for name, e, why in picks]
        return out

    def _bls(self, env: dict[str, str]) -> list[tuple[str, str]]:
        """The default BLS entry (grubenv saved_entry), else every non-rescue entry; $kernelopts expanded."""
        entries = [(p, line) for p, line in self.boot_generated if "/loader/entries/" in p]
        saved = env.get("saved_entry", "")
        chosen = [e for e in entries if e[0].rsplit("/", 1)[-1].removesuffix(".conf") == saved] or \
            [e for e in entries if "rescue" not in e[0]]
        out = []
        for path, line in chosen:
            words = [w for w in line.split() if w != "options"]
            words = [env.get(w.strip("${}"), "") if w.startswith("$") else w for w in words]
            out.append((path, " ".join(w for w in words if w)))
        return out

    def generated_boot(self) -> bool:
        return any(where.startswith("/boot/") for where, _ in self.boot_sources())


BY_ID = "/dev/disk/by-id/"


def _vendor(text: str) -> str:
    return {"GenuineIntel": "intel", "AuthenticAMD": "amd"}.get(text, text)


def from_probe(name: str, text: str, marker: str = sections.MARKER) -> HostFacts:
    """Parse the probe's output. Missing sections become empty facts, never errors."""
    by_name: dict[str, sections.Section] = {}
    definitions: list[tuple[str, str, str]] = []  # (defined|live, name, XML): virsh's or the files'
    for s in sections.split(text, marker):
        if s.name == "domain":
            state, dom_name = (s.args + ("", ""))[:2]
            definitions.append((state, dom_name, s.body))
        else:
            by_name[s.name] = s
            if s.name == "libvirt" and s.arg("source") == "files":
                definitions += libvirt.files_domains(s.body)
    domains: dict[str, libvirt.Domain] = {}
    for state, dom_name, xml_text in definitions:
        d = libvirt.domain(dom_name, state, xml_text)
        # "live": what a running domain holds now, hot-plugged devices included;
        # alone, a transient domain: nothing of it persists.
        if state == "live":
            d = libvirt.merged(domains.get(dom_name, libvirt.Domain(dom_name, True, (), ())), d)
        domains[dom_name] = d
    empty = sections.Section("", (), "")

    def sec(n: str) -> sections.Section:
        return by_name.get(n, empty)

    meta = {r[0]: r[1] if len(r) > 1 else "" for r in sec("probe").rows()}
    log = sec("dmesg").body.splitlines()
    groups, group_types = sysfs.iommu_groups(sysfs.group_rows(sec("iommu_groups").raw()))
    libvirt_sec = sec("libvirt")
    block_rows = storage.block_rows(sec("block").raw())
    source = libvirt_sec.arg("source", "none")
    return HostFacts(
        name=name,
        hostname=meta.get("hostname", ""),
        kernel=meta.get("kernel", ""),
        cpu_vendor=_vendor(meta.get("cpu_vendor", "")),
        uid=meta.get("uid", ""),
        ssh_connection=meta.get("ssh_connection", ""),
        cmdline=sec("cmdline").body.strip(),
        params=cmdline.params(sec("cmdline").body),
        acpi_tables=sec("acpi_tables").body.split(),
        iommu_class=sec("class_iommu").body.split(),
        groups=groups,
        group_types=group_types,
        pci=sysfs.pci_devices(sysfs.pci_rows(sec("pci").raw())),
        nvme=sysfs.nvme_controllers(sysfs.nvme_rows(sec("nvme").raw())),
        slots=sysfs.slots(sysfs.slot_rows(sec("slots").raw())),
        block=storage.block_devices(block_rows),
        btrfs=storage.btrfs_members(block_rows),
        dev_links=storage.disk_links(storage.disk_link_rows(sec("disk_links").raw())),
        mounts=storage.mounts(sec("mounts").body),
        boot_mounts=storage.boot_mounts(sec("fstab").files()),
        swaps=storage.swaps(sec("swaps").body),
        md_members=storage.md_members(sec("mdstat").body),
        network=sysfs.network(sysfs.net_rows(sec("net").raw())),
        modules=modules.modules(sec("modules").rows()),
        modprobe=modules.modprobe_lines(sec("modprobe_d").files()),
        driverctl=modules.driverctl_overrides(modules.driverctl_rows(sec("driverctl").raw())),
        boot_files=sec("boot_config").files(),
        boot_generated=[(r[0], r[1]) for r in sec("boot_generated").rows() if len(r) > 1 and r[1].strip()],
        interrupt_chips=sec("interrupts").body.split(),
        dmesg_source=sec("dmesg").arg("source", "none"),
        dmesg_unreadable=sec("dmesg").arg("unreadable", ""),
        boot_log=bool(log) and dmesg.boot_messages_present(log[0]),
        dmesg=dmesg.classify(log),
        libvirt_source=source,
        libvirt_error=libvirt_sec.body.strip() if source == "error" else "",
        libvirt_note="no libvirt daemon runs (virsh would start one): read /etc/libvirt/qemu and /run/libvirt/qemu"
        if libvirt_sec.arg("daemon") == "stopped" else "",
        domains=list(domains.values()),
        platform=platform.platform(platform.platform_rows(sec("platform").raw())),
        offline_copy=sec("probe").arg("root", "/") != "/",
        modprobe_files=sec("modprobe_d").files(),
        system={r[0]: r[1] for r in sec("system").rows() if len(r) > 1},
        binders=modules.binders(sec("binders").rows()),
    )
