from dataclasses import replace
from pathlib import Path

import pytest

from iommu_audit.rules import kernel

CMDLINE = "proc/cmdline"
BASE = "BOOT_IMAGE=/vmlinuz-5.15.0-91-generic root=/dev/mapper/vg0-root ro"


def set_cmdline(host, args: str):
    host.write(CMDLINE, f"{BASE} {args}\n")


# --- cmdline-iommu -------------------------------------------------------------

def test_cmdline_with_intel_iommu_on_and_profile_args_passes(host, dl360):
    v = kernel.cmdline_iommu(host.facts(), dl360)
    assert v.ok and "intel_iommu=on" in v.found


def test_missing_intel_iommu_fails_with_grub_fix(host, dl360):
    set_cmdline(host, "iommu=pt")
    v = kernel.cmdline_iommu(host.facts(), dl360)
    assert not v.ok and "intel_iommu=on is missing" in v.found
    assert "GRUB_CMDLINE_LINUX_DEFAULT" in v.fix and "update-grub" in v.fix


def test_last_intel_iommu_wins(host, dl360):
    set_cmdline(host, "intel_iommu=on iommu=pt intel_iommu=off")
    v = kernel.cmdline_iommu(host.facts(), dl360)
    assert not v.ok and "intel_iommu=off disables" in v.found
    set_cmdline(host, "intel_iommu=off intel_iommu=on,igfx_off iommu=pt")
    assert kernel.cmdline_iommu(host.facts(), dl360).ok


def test_a_later_opposite_undoes_a_required_argument(host, dl360):
    set_cmdline(host, "intel_iommu=on iommu=pt iommu=nopt")
    v = kernel.cmdline_iommu(host.facts(), dl360)
    assert not v.ok and "iommu=pt is required by the profile and missing" in v.found
    assert kernel.cmdline_iommu(host.facts(), replace(dl360, cmdline_require=[], cmdline_forbid=["iommu=pt"])).ok
    set_cmdline(host, "intel_iommu=on iommu=nopt iommu=pt")
    assert kernel.cmdline_iommu(host.facts(), dl360).ok


def test_iommu_off_disables_everything(host, dl360):
    set_cmdline(host, "intel_iommu=on iommu=off")
    v = kernel.cmdline_iommu(host.facts(), dl360)
    assert not v.ok and "iommu=off disables the IOMMU" in v.found and "iommu=pt is required" in v.found


def test_profile_required_and_forbidden_arguments(host, dl360):
    set_cmdline(host, "intel_iommu=on")
    v = kernel.cmdline_iommu(host.facts(), dl360)
    assert not v.ok and "iommu=pt is required by the profile" in v.found
    strict = replace(dl360, cmdline_forbid=["nomodeset"])
    set_cmdline(host, "intel_iommu=on iommu=pt nomodeset")
    v = kernel.cmdline_iommu(host.facts(), strict)
    assert not v.ok and "nomodeset is forbidden" in v.found


def test_amd_rules(host, dl360):
    amd = replace(dl360, cpu_vendor="amd", cmdline_require=[])
    set_cmdline(host, "quiet")
    assert kernel.cmdline_iommu(host.facts(), amd).ok  # on by default
    set_cmdline(host, "amd_iommu=on iommu=pt")
    v = kernel.cmdline_iommu(host.facts(), amd)
    assert not v.ok and "amd_iommu=on is not a valid option" in v.found and "on by default" in v.found
    set_cmdline(host, "amd_iommu=off")
    v = kernel.cmdline_iommu(host.facts(), amd)
    assert not v.ok and "amd_iommu=off disables the IOMMU" in v.found
    set_cmdline(host, "iommu=pt amd_iommu=force_isolation")
    assert kernel.cmdline_iommu(host.facts(), amd).ok


# --- cmdline-no-acs-override ---------------------------------------------------

def test_acs_override_is_flagged(host, dl360):
    assert kernel.cmdline_no_acs_override(host.facts(), dl360).ok
    set_cmdline(host, "intel_iommu=on iommu=pt pcie_acs_override=downstream,multifunction")
    v = kernel.cmdline_no_acs_override(host.facts(), dl360)
    assert not v.ok and "pcie_acs_override=downstream,multifunction" in v.found


# --- cmdline-persistent --------------------------------------------------------

def test_grub_keeps_the_arguments(host, dl360):
    v = kernel.cmdline_persistent(host.facts(), dl360)
    assert v.ok and "/etc/default/grub" in v.found


def test_arguments_only_on_the_running_kernel_fail(host, dl360):
    host.replace("etc/default/grub", 'GRUB_CMDLINE_LINUX_DEFAULT="intel_iommu=on iommu=pt"',
                 'GRUB_CMDLINE_LINUX_DEFAULT="quiet splash"')
    v = kernel.cmdline_persistent(host.facts(), dl360)
    assert not v.ok and "next boot" in v.found and "intel_iommu=on is missing" in v.found
    assert kernel.cmdline_iommu(host.facts(), dl360).ok  # the running kernel still has it


def test_grub_d_snippet_overrides_and_appends(host, dl360):
    # Ubuntu cloud images ship /etc/default/grub.d/50-cloudimg-settings.cfg, read after /etc/default/grub.
    host.write("etc/default/grub.d/50-cloudimg-settings.cfg",
               'GRUB_CMDLINE_LINUX_DEFAULT="console=tty1 console=ttyS0"\n')
    assert not kernel.cmdline_persistent(host.facts(), dl360).ok
    host.write("etc/default/grub.d/60-iommu.cfg",
               'GRUB_CMDLINE_LINUX_DEFAULT="$GRUB_CMDLINE_LINUX_DEFAULT intel_iommu=on iommu=pt"\n')
    v = kernel.cmdline_persistent(host.facts(), dl360)
    assert v.ok, v.found


def test_grub_edited_but_not_regenerated(host, dl360):
    host.replace("boot/grub/grub.cfg", " intel_iommu=on iommu=pt", "")
    v = kernel.cmdline_persistent(host.facts(), dl360)
    assert not v.ok and "/boot/grub/grub.cfg entry 'Ubuntu' (default=0): intel_iommu=on is missing" in v.found
    assert "update-grub" in v.fix and "/etc/default/grub: " not in v.found


UBUNTU_CFG = (Path(__file__).resolve().parents[2] / "data" / "grub" / "ubuntu-22.04-grub.cfg").read_text()
UUID = "b2d4f6a8-1c3e-4a5b-9d7f-0e2c4a6b8d10"
RECOVERY = f"gnulinux-advanced-{UUID}>gnulinux-5.15.0-91-generic-recovery-{UUID}"


def grubenv(**values) -> str:
    """A real grubenv: a 1024-byte block padded with '#'."""
    text = "# GRUB Environment Block\n" + "".join(f"{k}={v}\n" for k, v in values.items())
    return text + "#" * (1024 - len(text))


def test_grub_saved_entry_decides_which_entry_is_judged(host, dl360):
    # GRUB_DEFAULT=saved: grub boots grubenv's saved_entry (GRUB_SAVEDEFAULT kept a recovery boot there).
    host.replace("etc/default/grub", "GRUB_DEFAULT=0", "GRUB_DEFAULT=saved")
    host.write("boot/grub/grub.cfg", UBUNTU_CFG).write("boot/grub/grubenv", grubenv(saved_entry=RECOVERY))
    v = kernel.cmdline_persistent(host.facts(), dl360)
    assert not v.ok
    assert ("/boot/grub/grub.cfg entry 'Advanced options for Ubuntu > Ubuntu, with Linux 5.15.0-91-generic "
            f"(recovery mode)' (grubenv saved_entry={RECOVERY}): intel_iommu=on is missing") in v.found
    assert "grub-set-default" in v.fix
    host.write("boot/grub/grubenv", grubenv(saved_entry=f"gnulinux-advanced-{UUID}>gnulinux-5.15.0-91-generic-advanced-{UUID}"))
    assert kernel.cmdline_persistent(host.facts(), dl360).ok
    # next_entry: the next boot only, then saved_entry again; both must carry the arguments.
    host.write("boot/grub/grubenv", grubenv(saved_entry="0", next_entry="1>1"))
    v = kernel.cmdline_persistent(host.facts(), dl360)
    assert not v.ok and "(grubenv next_entry=1>1, the next boot only): intel_iommu=on is missing" in v.found


def test_grub_default_unknown_requires_every_entry(host, dl360):
    # The copy has no grubenv: saved_entry cannot be read, so every entry must carry the arguments.
    host.write("boot/grub/grub.cfg", UBUNTU_CFG)
    v = kernel.cmdline_persistent(host.facts(), dl360)
    assert not v.ok and "which entry boots is unknown: default=${saved_entry}, and no grubenv was read" in v.found
    assert "5.15.0-89-generic (recovery mode)" in v.found and "entry 'Ubuntu' (" not in v.found
    host.write("boot/grub/grub.cfg", UBUNTU_CFG.replace("recovery nomodeset", "recovery nomodeset intel_iommu=on iommu=pt"))
    assert kernel.cmdline_persistent(host.facts(), dl360).ok


def test_grub_default_by_title_and_by_number(host, dl360):
    cfg = UBUNTU_CFG.replace("recovery nomodeset dis_ucode_ldr", "recovery nomodeset dis_ucode_ldr intel_iommu=on iommu=pt")
    cfg = cfg.replace("5.15.0-89-generic root=/dev/mapper/vg0-root ro  intel_iommu=on iommu=pt",
                      "5.15.0-89-generic root=/dev/mapper/vg0-root ro  intel_iommu=off")
    title = 'set default="Advanced options for Ubuntu>Ubuntu, with Linux 5.15.0-89-generic"'
    host.write("boot/grub/grub.cfg", cfg.replace('set default="${saved_entry}"', title))
    v = kernel.cmdline_persistent(host.facts(), dl360)
    assert not v.ok and "Linux 5.15.0-89-generic' (default=Advanced options for Ubuntu>Ubuntu, with Linux " \
        "5.15.0-89-generic): intel_iommu=off disables" in v.found
    host.write("boot/grub/grub.cfg", cfg.replace('set default="${saved_entry}"', 'set default="1>0"'))
    assert kernel.cmdline_persistent(host.facts(), dl360).ok


def test_bls_entries_are_read(host, dl360):
    host.remove("etc/default/grub").remove("boot/grub/grub.cfg")
    host.write("boot/loader/entries/6d3c1f0a-5.14.0-362.el9.x86_64.conf",
               "title Rocky Linux (5.14.0-362.el9.x86_64)\nversion 5.14.0-362.el9.x86_64\nlinux /vmlinuz-5.14.0-362.el9.x86_64\n"
               "options root=/dev/mapper/rl-root ro crashkernel=1G-4G:192M intel_iommu=on iommu=pt\n")
    assert kernel.cmdline_persistent(host.facts(), dl360).ok


def test_kernel_cmdline_file_and_no_boot_config(host, dl360):
    host.remove("etc/default/grub").remove("boot/grub/grub.cfg")
    v = kernel.cmdline_persistent(host.facts(), dl360)
    assert not v.ok and "no boot loader configuration" in v.found
    host.write("etc/kernel/cmdline", "root=ZFS=rpool/ROOT/pve-1 boot=zfs intel_iommu=on iommu=pt\n")
    assert kernel.cmdline_persistent(host.facts(), dl360).ok


# --- iommu-active --------------------------------------------------------------

def test_groups_and_units_pass(host, dl360):
    v = kernel.iommu_active(host.facts(), dl360)
    assert v.ok and "2 IOMMU unit(s)" in v.found and "18 IOMMU group(s)" in v.found


def test_enabled_in_log_but_no_groups_fails(host, dl360):
    # What a kernel with intel_iommu=on but no usable DMAR unit shows: the log line, no groups.
    # The copy keeps the (empty) directories, as a copy of such a host does.
    host.remove("sys/kernel/iommu_groups").remove("sys/class/iommu")
    host.path("sys/kernel/iommu_groups").mkdir()
    host.path("sys/class/iommu").mkdir()
    v = kernel.iommu_active(host.facts(), dl360)
    assert not v.ok and "0 IOMMU group(s)" in v.found and "yet no group exists" in v.found
    assert any("DMAR: IOMMU enabled" in e for e in v.evidence)


def test_copy_without_the_iommu_directories_says_what_the_copy_lacks(host, dl360):
    host.remove("sys/class/iommu")
    v = kernel.iommu_active(host.facts(), dl360)
    assert not v.ok and "the copy has no sys/class/iommu" in v.found and "yet no group exists" not in v.found
    assert "copy /sys/class/iommu from the host" in v.fix
    host.remove("sys/kernel/iommu_groups")
    v = kernel.iommu_active(host.facts(), dl360)
    assert "the copy has no sys/class/iommu and no sys/kernel/iommu_groups" in v.found


def test_active_without_any_log_line_passes(host, dl360):
    # Rotated ring buffer or a default-on kernel: sysfs is the proof, not dmesg.
    host.write("dmesg", "[1834567.123456] perf: interrupt took too long (2503 > 2500)\n")
    assert kernel.iommu_active(host.facts(), dl360).ok


# --- interrupt-remapping -------------------------------------------------------

def test_ir_chips_in_proc_interrupts_pass(host, dl360):
    v = kernel.interrupt_remapping(host.facts(), dl360)
    assert v.ok and "IR-PCI-MSI" in v.found


def test_no_ir_fails_and_names_intremap_off(host, dl360):
    host.write("proc/interrupts", host.read("proc/interrupts").replace("IR-", ""))
    host.write("dmesg", "\n".join(l for l in host.read("dmesg").splitlines() if "IRQ remapping" not in l) + "\n")
    set_cmdline(host, "intel_iommu=on iommu=pt intremap=off")
    v = kernel.interrupt_remapping(host.facts(), dl360)
    assert not v.ok and "intremap=off" in v.found and v.fix == "remove intremap=off"


# --- vfio-modules --------------------------------------------------------------

def test_builtin_vfio_counts(host, dl360):
    # Ubuntu builds vfio, vfio_pci and vfio_iommu_type1 into the kernel: not in /proc/modules.
    f = host.facts()
    assert "vfio_pci" not in f.modules.loaded
    assert kernel.vfio_modules(f, dl360).ok


def test_missing_vfio_modules_fail(host, dl360):
    host.write("lib/modules/5.15.0-91-generic/modules.builtin", "kernel/drivers/iommu/intel/iommu.ko\n")
    for m in ("vfio", "vfio_pci", "vfio_iommu_type1"):
        host.remove(f"sys/module/{m}")
    host.write("lib/modules/5.15.0-91-generic/modules.dep",
               "kernel/drivers/vfio/vfio.ko:\nkernel/drivers/vfio/pci/vfio-pci.ko.zst: kernel/drivers/vfio/vfio.ko\n")
    v = kernel.vfio_modules(host.facts(), dl360)
    assert not v.ok and "not loaded: vfio, vfio_pci, vfio_iommu_type1" in v.found
    assert "available on disk: vfio, vfio_pci" in v.found and "modprobe vfio-pci" in v.fix
    host.append("proc/modules", "vfio_iommu_type1 45056 0 - Live 0x0000000000000000\n"
                "vfio_pci 16384 0 - Live 0x0000000000000000\nvfio 45056 2 vfio_iommu_type1,vfio_pci, Live 0x0\n")
    assert kernel.vfio_modules(host.facts(), dl360).ok


def modular_vfio(host):
    """vfio as loadable modules, loaded now (Debian, RHEL), instead of Ubuntu's built-ins."""
    host.write("lib/modules/5.15.0-91-generic/modules.builtin", "kernel/drivers/iommu/intel/iommu.ko\n")
    host.append("proc/modules", "vfio_iommu_type1 45056 0 - Live 0x0000000000000000\n"
                "vfio_pci 16384 0 - Live 0x0000000000000000\nvfio 45056 2 vfio_iommu_type1,vfio_pci, Live 0x0\n")
    return host


def test_blacklisted_vfio_fails_while_loaded_now(host, dl360):
    modular_vfio(host)
    assert kernel.vfio_modules(host.facts(), dl360).ok
    host.write("etc/modprobe.d/no-vfio.conf", "blacklist vfio-pci\ninstall vfio_iommu_type1 /bin/false\n"
               "install vfio /sbin/modprobe --ignore-install vfio\n")
    v = kernel.vfio_modules(host.facts(), dl360)
    assert not v.ok and "loaded now, but VFIO will not load at boot" in v.found
    assert "'blacklist vfio-pci' in /etc/modprobe.d/no-vfio.conf" in v.found
    assert "'install vfio_iommu_type1 /bin/false'" in v.found and "ignore-install" not in v.found


def test_vfio_blacklisted_on_the_command_line(host, dl360):
    modular_vfio(host)
    host.replace("etc/default/grub", 'iommu=pt"', 'iommu=pt modprobe.blacklist=nouveau modprobe.blacklist=vfio_pci"')
    v = kernel.vfio_modules(host.facts(), dl360)
    assert not v.ok and "modprobe.blacklist=vfio_pci in /etc/default/grub" in v.found
    # module_blacklist= is one parameter: the last occurrence is what the kernel keeps.
    host.write("proc/cmdline", host.read("proc/cmdline").strip() + " module_blacklist=vfio module_blacklist=nouveau\n")
    host.replace("etc/default/grub", " modprobe.blacklist=nouveau modprobe.blacklist=vfio_pci", "")
    assert kernel.vfio_modules(host.facts(), dl360).ok


def test_blacklist_does_not_touch_built_in_vfio(host, dl360):
    host.write("etc/modprobe.d/no-vfio.conf", "blacklist vfio_pci\ninstall vfio /bin/true\n")
    assert kernel.vfio_modules(host.facts(), dl360).ok


# --- no-known-blockers ---------------------------------------------------------

RMRR = ("[  412.803338] vfio-pci 0000:06:00.0: Device is ineligible for IOMMU domain attach due to platform "
        "RMRR requirement.  Contact your platform vendor.\n")


def test_clean_log_passes(host, dl360):
    assert kernel.no_known_blockers(host.facts(), dl360).ok


def test_rmrr_refusals_are_left_to_no_rmrr_lockout(host, dl360):
    # no-rmrr-lockout judges them per device (tests/unit/rules/test_firmware.py).
    host.append("dmesg", RMRR)
    assert kernel.no_known_blockers(host.facts(), dl360).ok


def test_unsafe_interrupts_and_firmware_bugs(host, dl360):
    host.append("dmesg", '[  98.114455] vfio_iommu_type1_attach_group: No interrupt remapping support.  Use the module '
                'param "allow_unsafe_interrupts" to enable VFIO IOMMU support on this platform\n'
                "[    0.301223] DMAR: [Firmware Bug]: Your BIOS is broken; DMAR reported at address 0!\n")
    v = kernel.no_known_blockers(host.facts(), dl360)
    assert not v.ok and "allow_unsafe_interrupts" in v.fix and "update the system firmware" in v.fix


def test_unreadable_log_cannot_pass(host, dl360):
    host.remove("dmesg")
    v = kernel.no_known_blockers(host.facts(), dl360)
    assert not v.ok and "could not be read" in v.found


@pytest.mark.parametrize("why, found, fix", [
    ("dmesg:timeout", "dmesg did not finish within the probe's 30 s", "find out why dmesg hangs"),
    ("dmesg:refused", "kernel.dmesg_restrict", "run as root or with --sudo"),
    ("/dmesg", "/dmesg exists but is not a readable file", "run as root or with --sudo")])
def test_an_unread_log_says_why(host, dl360, why, found, fix):
    # What the probe reports when the live host's dmesg hung or refused, or a copy's log is unreadable.
    v = kernel.no_known_blockers(replace(host.facts(), dmesg_source="none", dmesg=[], dmesg_unreadable=why), dl360)
    assert not v.ok and found in v.found and fix in v.fix


def test_rotated_log_cannot_pass(host, dl360):
    # Boot-time firmware bugs are not in a log without its boot part: not checked, so not passed.
    host.write("dmesg", "[1834567.123456] perf: interrupt took too long (2503 > 2500)\n")
    f = host.facts()
    v = kernel.no_known_blockers(f, dl360)
    # An offline copy: the finding says what the copy lacks.
    assert not v.ok and "the copy's /dmesg does not start at boot" in v.found and "journalctl -k -b" in v.fix
    v = kernel.no_known_blockers(replace(f, offline_copy=False), dl360)
    assert not v.ok and "rotated out of the kernel log" in v.found and "Storage=persistent" in v.fix


def test_firmware_bug_lines_count_when_the_log_does_not_start_at_boot(host, dl360):
    # A 3.x/4.x warn_invalid_dmar splat has no prefix and no [Firmware Bug] tag.
    host.write("dmesg", "[1834567.123456] perf: interrupt took too long (2503 > 2500)\n"
               "[    0.000000] Your BIOS is broken; DMAR reported at address fed90000 returns all ones!\n"
               "[    0.000000] BIOS vendor: HP; Ver: P89; Product Version: ProLiant DL360 Gen9\n")
    f = host.facts()
    assert not f.boot_log
    v = kernel.no_known_blockers(f, dl360)
    assert not v.ok and "returns all ones" in v.found and "update the system firmware" in v.fix
    assert any("BIOS vendor: HP; Ver: P89" in e for e in v.evidence)


@pytest.mark.parametrize("line", [
    "[    0.103707] DMAR: DRHD base: 0x00000000000000 flags: 0x1",
    "[    0.021013] DMAR: [Firmware Bug]: Your BIOS is broken; RHSA refers to non-existent DMAR unit at fbffc000",
    "[    0.000000] [Firmware Bug]: AMD-Vi: IOAPIC[9] not in IVRS table",
    "[    0.541210] AMD-Vi: [Firmware Bug]: : IOAPIC[4] not in IVRS table",
    "[    0.297490] AMD-Vi: Disabling interrupt remapping due to BIOS Bug(s)",
])
def test_broken_dmar_and_ivrs_tables_are_blockers(host, dl360, line):
    host.append("dmesg", line + "\n")
    v = kernel.no_known_blockers(host.facts(), dl360)
    assert not v.ok and line.split("] ", 1)[1] in v.found


def test_healthy_dmar_lines_are_not_blockers(host, dl360):
    host.append("dmesg", "[    0.288166] DMAR: DRHD base: 0x000000fbffc000 flags: 0x0\n"
                "[    1.523079] DMAR: Setting identity map for device 0000:00:1d.0 [0x7f258000 - 0x7f266fff]\n")
    assert kernel.no_known_blockers(host.facts(), dl360).ok


# --- vfio-ids-scope ------------------------------------------------------------

def test_no_ids_passes(host, dl360):
    assert kernel.vfio_ids_scope(host.facts(), dl360).ok


def test_ids_capturing_the_hosts_own_nvme_fail(host, dl360):
    # All four NVMe are the same model: vfio-pci.ids=144d:a808 would take the host's system disk too.
    host.replace("etc/default/grub", 'iommu=pt"', 'iommu=pt vfio-pci.ids=144d:a808"')
    v = kernel.vfio_ids_scope(host.facts(), dl360)
    assert not v.ok and "0000:09:00.0" in v.found and "/etc/default/grub" in v.found
    assert "driverctl set-override" in v.fix


def test_modprobe_ids_for_a_model_only_in_vms_pass(host, dl360):
    # vfio_pci as a module (Debian, RHEL): modprobe.d options apply.
    host.write("lib/modules/5.15.0-91-generic/modules.builtin", "kernel/drivers/vfio/vfio.ko\n")
    host.write("etc/modprobe.d/vfio.conf", "options vfio-pci ids=10de:1db6 disable_vga=1\n")
    v = kernel.vfio_ids_scope(host.facts(), dl360)
    assert v.ok and "10de:1db6" in v.found
    host.write("etc/modprobe.d/vfio.conf", "options vfio_pci ids=14e4:1657\n")
    v = kernel.vfio_ids_scope(host.facts(), dl360)
    assert not v.ok and "0000:02:00.0" in v.found and "Ethernet" in v.found


def test_missing_argument_on_a_default_on_kernel_says_why_it_still_matters(host, dl360):
    set_cmdline(host, "iommu=pt")  # groups still exist: the kernel turned VT-d on by itself
    v = kernel.cmdline_iommu(host.facts(), dl360)
    assert not v.ok and any("enables VT-d by default" in e for e in v.evidence)
    host.remove("sys/kernel/iommu_groups")
    assert not any("by default" in e for e in kernel.cmdline_iommu(host.facts(), dl360).evidence)


def test_proxmox_systemd_boot_uses_kernel_cmdline_only(host, dl360):
    # proxmox-boot-tool with systemd-boot: /etc/default/grub (and an old grub.cfg) are not used.
    host.replace("etc/default/grub", '"intel_iommu=on iommu=pt"', '"quiet"')
    host.replace("boot/grub/grub.cfg", " intel_iommu=on iommu=pt", "")
    host.write("etc/kernel/cmdline", "root=ZFS=rpool/ROOT/pve-1 boot=zfs intel_iommu=on iommu=pt\n")
    host.write("etc/kernel/proxmox-boot-uuids", "6A1B-2C3D\n")
    host.replace("proc/cmdline", "BOOT_IMAGE=/vmlinuz-5.15.0-91-generic ", "")  # systemd-boot passes none
    v = kernel.cmdline_persistent(host.facts(), dl360)
    assert v.ok and "/etc/kernel/cmdline" in v.found


def test_stray_kernel_cmdline_does_not_hide_grub_that_boots(host, dl360):
    # grub started the running kernel (BOOT_IMAGE=): its files decide the next boot, whatever
    # a leftover /etc/kernel/cmdline says.
    host.replace("etc/default/grub", '"intel_iommu=on iommu=pt"', '"quiet"')
    host.replace("boot/grub/grub.cfg", " intel_iommu=on iommu=pt", "")
    host.write("etc/kernel/cmdline", "root=/dev/mapper/vg0-root ro intel_iommu=on iommu=pt\n")
    v = kernel.cmdline_persistent(host.facts(), dl360)
    assert not v.ok and "/etc/default/grub" in v.found and "intel_iommu=on is missing" in v.found


def test_kernel_cmdline_beside_grub_must_agree(host, dl360):
    host.write("etc/kernel/cmdline", "root=/dev/mapper/vg0-root ro quiet\n")  # kernel-install's source for BLS
    v = kernel.cmdline_persistent(host.facts(), dl360)
    assert not v.ok and "/etc/kernel/cmdline" in v.found


def test_rhel8_bls_kernelopts_and_rescue_entries(host, dl360):
    host.remove("etc/default/grub").remove("boot/grub/grub.cfg")
    entries = "boot/loader/entries/"
    host.write(entries + "d9f3e1c2-4.18.0-513.el8.x86_64.conf",
               "title Rocky Linux (4.18.0-513.el8.x86_64) 8.9\nlinux /vmlinuz-4.18.0-513.el8.x86_64\n"
               "options $kernelopts $tuned_params\nid rocky-20231121-4.18.0-513.el8.x86_64\n")
    host.write(entries + "d9f3e1c2-0-rescue.conf", "title Rocky Linux (0-rescue)\noptions $kernelopts\n")
    host.write("boot/grub2/grubenv", "# GRUB Environment Block\nsaved_entry=d9f3e1c2-4.18.0-513.el8.x86_64\n"
               "kernelopts=root=/dev/mapper/rl-root ro crashkernel=auto resume=/dev/mapper/rl-swap intel_iommu=on iommu=pt\n")
    v = kernel.cmdline_persistent(host.facts(), dl360)
    assert v.ok, v.found
    assert "0-rescue" not in v.found
    host.replace("boot/grub2/grubenv", " intel_iommu=on iommu=pt", "")
    v = kernel.cmdline_persistent(host.facts(), dl360)
    assert not v.ok and "grubby" in v.fix


def test_a_comment_that_looks_like_a_file_header_is_just_text(host, dl360):
    host.write("etc/default/grub", "# file managed by ansible, do not edit\n" + host.read("etc/default/grub"))
    assert kernel.cmdline_persistent(host.facts(), dl360).ok
