"""The running kernel: command line, boot configuration, DMA and interrupt remapping, modules, log."""

from iommu_audit.facts import HostFacts
from iommu_audit.parsers import cmdline
from iommu_audit.parsers.modules import module_name
from iommu_audit.profile import Profile
from iommu_audit.rules.devices import boot_id_claims, passthrough_addresses
from iommu_audit.verdict import Verdict, failed, passed

GRUB_FIX = ("edit GRUB_CMDLINE_LINUX_DEFAULT in /etc/default/grub (or /etc/kernel/cmdline) to give: {want}; "
            "run update-grub and reboot")


def cmdline_problems(params: list[cmdline.Param], profile: Profile) -> list[str]:
    """Why a command line does not give this profile a working IOMMU ([] if it does)."""
    problems = []
    off = cmdline.iommu_off(params)
    if off:
        problems.append(f"{off} disables the IOMMU")
    if profile.cpu_vendor == "intel":
        state, arg = cmdline.intel_iommu_state(params)
        if state is None:
            problems.append("intel_iommu=on is missing")
        elif state == "off":
            problems.append(f"{arg} disables Intel DMA remapping (the last intel_iommu= wins)")
    else:
        for opt in cmdline.amd_iommu_invalid(params):
            hint = " (the AMD IOMMU is on by default; remove it)" if opt == "on" else ""
            problems.append(f"amd_iommu={opt} is not a valid option{hint}")
    problems += [f"{w} is required by the profile and missing" for w in profile.cmdline_require
                 if not cmdline.has(params, w)]
    problems += [f"{w} is forbidden by the profile" for w in profile.cmdline_forbid if cmdline.has(params, w)]
    return problems


def expected_cmdline(profile: Profile) -> str:
    want = (["intel_iommu=on"] if profile.cpu_vendor == "intel" else ["no iommu=off/amd_iommu=off"])
    want += [w for w in profile.cmdline_require if w not in want]
    return " ".join(want) + (f"; none of: {' '.join(profile.cmdline_forbid)}" if profile.cmdline_forbid else "")


def cmdline_iommu(facts: HostFacts, profile: Profile) -> Verdict:
    problems = cmdline_problems(facts.params, profile)
    evidence = [f"/proc/cmdline: {facts.cmdline}"]
    if "intel_iommu=on is missing" in problems and facts.groups:
        # Kernels built with CONFIG_INTEL_IOMMU_DEFAULT_ON (e.g. Debian 12's 6.1, seen in the e2e guests)
        # enable it without the argument.
        evidence.append("this kernel enables VT-d by default and IOMMU groups exist now; the explicit argument "
                        "keeps it on if the kernel or its defaults change")
    if problems:
        return failed("; ".join(problems), expected_cmdline(profile), GRUB_FIX.format(want=expected_cmdline(profile)), evidence)
    return passed(f"/proc/cmdline has {expected_cmdline(profile)}", evidence)


def cmdline_no_acs_override(facts: HostFacts, profile: Profile) -> Verdict:
    acs = [f"pcie_acs_override={v}" if v else "pcie_acs_override" for v in cmdline.values(facts.params, "pcie_acs_override")]
    if acs:
        return failed(f"{' '.join(acs)} on the kernel command line: IOMMU groups are not real isolation",
                      "no pcie_acs_override", "remove pcie_acs_override from the boot configuration; move the "
                      "device to a slot whose upstream port supports ACS instead", [f"/proc/cmdline: {facts.cmdline}"])
    return passed("no pcie_acs_override on the kernel command line")


REGENERATE_FIX = ("regenerate the boot loader configuration: update-grub (Debian/Ubuntu), "
                  "grubby --update-kernel=ALL --args=... (RHEL and other BLS systems), "
                  "proxmox-boot-tool refresh (Proxmox); then reboot")


def cmdline_persistent(facts: HostFacts, profile: Profile) -> Verdict:
    sources = facts.boot_sources()
    if not sources:
        return failed("no boot loader configuration found (/etc/default/grub, /etc/default/grub.d/*.cfg, "
                      "/etc/kernel/cmdline, /boot/grub/grub.cfg, /boot/loader/entries)",
                      f"a boot configuration with {expected_cmdline(profile)}",
                      "keep the kernel arguments in the boot loader configuration")
    # Every configuration present must agree: the file an admin edits, and what was generated from it.
    bad = []
    for where, line in sources:
        params = cmdline.params(line)
        problems = cmdline_problems(params, profile)
        if cmdline.values(params, "pcie_acs_override"):
            problems.append("pcie_acs_override would be set at the next boot")
        if problems:
            bad.append((where, problems))
    evidence = [f"{where}: {line}" for where, line in sources]
    if not bad:
        return passed(f"next boot keeps {expected_cmdline(profile)} ({', '.join(w for w, _ in sources)})", evidence)
    generated_only = all(w.startswith("/boot/") for w, _ in bad)
    fix = REGENERATE_FIX if generated_only else GRUB_FIX.format(want=expected_cmdline(profile))
    if any("(grubenv " in w or "which entry boots is unknown" in w for w, _ in bad):
        fix += ("; or make grub boot an entry that has them: grub-set-default <its id> (GRUB_DEFAULT=saved), "
                "grub-editenv /boot/grub/grubenv unset next_entry, or GRUB_DEFAULT in /etc/default/grub + update-grub")
    return failed("next boot: " + "; ".join(f"{where}: {', '.join(p)}" for where, p in bad),
                  expected_cmdline(profile), fix, evidence)


def iommu_active(facts: HostFacts, profile: Profile) -> Verdict:
    units, groups = facts.iommu_class, facts.groups
    evidence = [f.line for f in facts.findings("intel_enabled") + facts.findings("intel_disabled")
                + facts.findings("vtd_active") + facts.findings("amd_found") + facts.findings("amd_disabled")
                + facts.findings("default_domain")]
    found = f"{len(units)} IOMMU unit(s) in /sys/class/iommu ({', '.join(units) or 'none'}), {len(groups)} IOMMU group(s)"
    if units and groups:
        return passed(found, evidence)
    missing = [p for p in ("sys/class/iommu", "sys/kernel/iommu_groups") if p in facts.platform.missing]
    if missing:  # an offline copy: say what it lacks instead of diagnosing the host
        return failed(f"the copy has no {' and no '.join(missing)}, so it cannot show whether the IOMMU is active"
                      f" ({found})", "at least one IOMMU unit and populated /sys/kernel/iommu_groups",
                      f"copy {', '.join('/' + p for p in missing)} from the host into the sysroot (README: Sysroot layout)",
                      evidence)
    if facts.findings("intel_enabled") and not groups:
        found += "; the kernel log says the IOMMU was enabled, yet no group exists (no usable DMAR unit)"
    return failed(found, "at least one IOMMU unit and populated /sys/kernel/iommu_groups",
                  "fix the firmware and command-line requirements above, then reboot", evidence)


def interrupt_remapping(facts: HostFacts, profile: Profile) -> Verdict:
    chips = [c for c in facts.interrupt_chips if c.startswith("IR-")]
    logged = [f.line for f in facts.findings("ir_enabled")]
    evidence = logged + [f.line for f in facts.findings("ir_failed")]
    if chips or logged:
        how = f"remapped interrupt chips in /proc/interrupts: {', '.join(chips)}" if chips else "kernel log"
        return passed(f"interrupt remapping enabled ({how})", evidence)
    off = [f"intremap={v}" for v in cmdline.values(facts.params, "intremap") if v in ("off", "nosid")]
    fix = "remove " + " ".join(off) if off else "enable interrupt remapping / x2APIC in the firmware setup"
    return failed("no remapped (IR-*) interrupts in /proc/interrupts and no 'IRQ remapping enabled' in the kernel log"
                  + (f"; {' '.join(off)} on the command line" if off else ""),
                  "interrupt remapping enabled", fix, evidence)


VFIO_MODULES = ("vfio", "vfio_pci", "vfio_iommu_type1")


def vfio_load_blockers(facts: HostFacts) -> list[str]:
    """What keeps a modular VFIO module from loading at boot: modprobe.d blacklist/install lines and
    module_blacklist=/modprobe.blacklist=. A built-in module is never affected."""
    mods = {n for n in VFIO_MODULES + ("vfio_pci_core",) if n not in facts.modules.builtin}
    out = []
    for ml in facts.modprobe:
        w = ml.words
        if len(w) >= 2 and w[0] in ("blacklist", "install") and module_name(w[1]) in mods:
            # "install vfio_pci ... modprobe --ignore-install vfio_pci" still loads it.
            if w[0] == "install" and ("--ignore-install" in w or "-i" in w):
                continue
            out.append(f"'{' '.join(w)}' in {ml.path}")
    for where, line in [("/proc/cmdline", facts.cmdline)] + facts.boot_sources():
        ps = cmdline.params(line)
        # module_blacklist= is one kernel parameter (the last wins); kmod adds up every modprobe.blacklist=.
        listed = [("module_blacklist", m) for m in (cmdline.effective(ps, "module_blacklist") or "").split(",")]
        listed += [("modprobe.blacklist", m) for v in cmdline.values(ps, "modprobe.blacklist") for m in (v or "").split(",")]
        out += [f"{key}={m} in {where}" for key, m in listed if m and module_name(m) in mods]
    return list(dict.fromkeys(out))


def vfio_modules(facts: HostFacts, profile: Profile) -> Verdict:
    m = facts.modules
    missing = [n for n in VFIO_MODULES if not m.active(n)]
    blocked = vfio_load_blockers(facts)
    if blocked:
        now = "loaded now, but " if not missing else ""
        return failed(f"{now}VFIO will not load at boot: {'; '.join(blocked)}",
                      f"{', '.join(VFIO_MODULES)} loadable at boot (not blacklisted)",
                      "remove these lines from modprobe.d and the kernel command line, then rebuild the initramfs "
                      "(update-initramfs -u, dracut -f) and the boot configuration")
    if not missing:
        return passed("loaded or built in: " + ", ".join(VFIO_MODULES))
    on_disk = [n for n in missing if n in m.on_disk]
    found = f"not loaded: {', '.join(missing)}"
    if on_disk:
        found += f" (available on disk: {', '.join(on_disk)})"
        fix = "modprobe vfio-pci, and list vfio-pci in /etc/modules-load.d/vfio-pci.conf so it loads at boot"
    else:
        fix = f"install a kernel with VFIO (modules {', '.join(missing)}), e.g. linux-modules-extra on Ubuntu"
    return failed(found, f"{', '.join(VFIO_MODULES)} loaded or built in", fix)


# RMRR refusals and RMRR lines of profiled devices are judged per device by no-rmrr-lockout.
BLOCKER_FIX = {
    "firmware_bug": "update the system firmware (BIOS/UEFI); a broken DMAR/IVRS table makes DMA remapping unreliable",
    "unsafe_interrupts": "enable interrupt remapping (x2APIC / IR) in firmware; do not set allow_unsafe_interrupts",
}


def no_known_blockers(facts: HostFacts, profile: Profile) -> Verdict:
    if facts.dmesg_source == "none":
        why = facts.dmesg_unreadable  # a sysroot's unreadable log path, or dmesg:timeout / dmesg:refused (live)
        if why == "dmesg:timeout":
            return failed("the kernel log could not be read (dmesg did not finish within the probe's 30 s)",
                          "a readable kernel log to search for known blockers",
                          "find out why dmesg hangs on this host (run it by hand), then audit again")
        unreadable = {"dmesg:refused": " (dmesg refused: kernel.dmesg_restrict for a non-root user)", "": ""}.get(
            why, f" ({why} exists but is not a readable file)")
        return failed(f"the kernel log could not be read{unreadable}", "a readable kernel log to search for known blockers",
                      "run as root or with --sudo (dmesg is restricted), or add a dmesg capture to the sysroot")
    # Every line present counts, whether or not the log still starts at boot.
    hits = [f for kind in BLOCKER_FIX for f in facts.findings(kind)]
    if hits:
        kinds = list(dict.fromkeys(f.kind for f in hits))
        return failed("; ".join(f.line for f in hits), "no firmware-bug or unsafe-interrupt messages",
                      " / ".join(BLOCKER_FIX[k] for k in kinds), [f.line for f in hits + facts.findings("bios_vendor")])
    if facts.boot_log:
        return passed(f"no known blocker in the kernel log ({facts.dmesg_source})")
    # Firmware-table bugs are printed at boot only: a log without its boot part cannot show
    # they are absent, and a host that could not be checked never passes.
    expected = "a kernel log that still holds this boot's first messages, free of firmware-bug lines"
    if facts.offline_copy:
        return failed(f"the copy's {facts.dmesg_source} does not start at boot, so boot-time firmware messages "
                      "could not be checked", expected,
                      "put a log taken since boot in the copy (journalctl -k -b, or dmesg soon after boot)")
    return failed(f"boot messages have rotated out of the kernel log ({facts.dmesg_source}) and no journal of this "
                  "boot holds them: boot-time firmware messages could not be checked", expected,
                  "keep the boot log: a persistent journal (Storage=persistent in journald.conf) or a larger ring "
                  "buffer (log_buf_len=16M), then audit after the next boot; or waive no-known-blockers for this host "
                  "with the reason")


def vfio_ids_scope(facts: HostFacts, profile: Profile) -> Verdict:
    claims = [(i, "/proc/cmdline") for i in cmdline.vfio_pci_ids(facts.params)] + boot_id_claims(facts, pending=True)
    if not claims:
        return passed("vfio-pci.ids is not used")
    wanted = set(passthrough_addresses(facts, profile))
    stray = []
    for pci_id, where in dict.fromkeys(claims):
        for dev in facts.pci.values():
            if dev.id == pci_id and dev.address not in wanted:
                stray.append(f"{pci_id} ({where}) also claims {dev.describe()}")
    ids = ", ".join(dict.fromkeys(f"{i} ({w})" for i, w in claims))
    if stray:
        return failed("; ".join(stray), "vfio-pci.ids matches only devices the profile passes to VMs",
                      "bind per device instead (driverctl set-override <address> vfio-pci) and drop the ids= entry", [f"vfio-pci.ids: {ids}"])
    return passed(f"vfio-pci.ids claims only profiled passthrough devices ({ids})")
