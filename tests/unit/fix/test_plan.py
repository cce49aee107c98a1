"""Plans computed from copies of the sample host, broken one thing at a time."""

import re
from dataclasses import replace
from pathlib import Path

import pytest

from iommu_audit.fix.plan import (CHANGE, MANUAL, REFUSED, WAITING, HostPlan, PlanError, Step, boot_unmet,
                                  checked_address, plan_host)

NVME1, NVME2, NVME3, NVME4 = "0000:06:00.0", "0000:07:00.0", "0000:08:00.0", "0000:09:00.0"


def kinds(plan):
    return [(s.kind, s.requirement, s.subject) for s in plan.steps]


def test_compliant_host_has_nothing_to_do(host, dl360):
    plan = plan_host(host.facts(), dl360)
    assert plan.steps == [] and plan.failing == {}


def test_unbound_device_is_bound_then_assigned(host, dl360):
    host.bind(NVME1, "nvme").remove(f"etc/driverctl.d/pci-{NVME1}")
    plan = plan_host(host.facts(), dl360)
    assert kinds(plan) == [(CHANGE, "bound-to-vfio", "ceph-nvme-1")]
    assert plan.steps[0].args == [NVME1]
    assert "bound-to-vfio[ceph-nvme-1]" in plan.failing


def test_missing_persistence_and_hostdev_are_planned_in_dependency_order(host, dl360):
    host.bind(NVME1, "nvme").remove(f"etc/driverctl.d/pci-{NVME1}")
    xml = host.read("etc/libvirt/qemu/z-ceph-1.xml")
    host.write("etc/libvirt/qemu/z-ceph-1.xml", re.sub(r"<hostdev.*?</hostdev>", "", xml, flags=re.S))
    host.remove("run/libvirt/qemu/z-ceph-1.xml")
    plan = plan_host(host.facts(), dl360)
    assert [s.requirement for s in plan.changes] == ["bound-to-vfio", "vfio-binding-persistent", "assigned-to-vm"]
    assert plan.changes[2].args == ["z-ceph-1", NVME1]


def test_the_persistence_step_says_what_will_apply_the_binding_at_boot(host, dl360):
    host.remove(f"etc/driverctl.d/pci-{NVME1}")
    host.replace("etc/libvirt/qemu/z-ceph-1.xml", "managed='yes'", "managed='no'")
    [step] = plan_host(host.facts(), dl360).changes
    assert step.summary == f"bind {NVME1} to vfio-pci at every boot: driverctl set-override (never vfio-pci.ids)"
    host.remove("lib/udev/rules.d/05-driverctl.rules").remove("lib/systemd/system/driverctl@.service")
    [step] = plan_host(host.facts(), dl360).changes
    assert "with our udev rule, because driverctl is not installed" in step.summary and step.args == [NVME1]
    assert step.commands == [f"write /etc/driverctl.d/pci-{NVME1} + /etc/udev/rules.d/89-iommu-audit-vfio.rules "
                             "(applies it at boot)"]


def test_mounted_device_is_refused_naming_the_mount(host, dl360):
    host.bind(NVME4, "nvme")
    pci4 = replace(dl360.device_named("host-nvme-4"), vm="z-ceph-9")  # the host's system drive, profiled for a VM
    profile = replace(dl360, devices=[pci4])
    plan = plan_host(host.facts(), profile)
    refused = [s for s in plan.steps if s.kind == REFUSED]
    assert refused and "mounted on /" in refused[0].summary and not plan.changes


def test_unclean_group_is_a_manual_step(host, dl360):
    host.bind(NVME2, "nvme").move_to_group(NVME1, "40").move_to_group(NVME2, "40")
    profile = replace(dl360, devices=[replace(dl360.device_named("ceph-nvme-2"), vm="z-other"),
                                      dl360.device_named("ceph-nvme-1")])
    host.bind(NVME1, "nvme")
    plan = plan_host(host.facts(), profile)
    assert (MANUAL, "iommu-group-clean", "ceph-nvme-1") in kinds(plan)
    assert not any(s.requirement == "bound-to-vfio" and s.subject == "ceph-nvme-1" for s in plan.changes)


def test_group_members_for_the_same_vm_are_bound_together(host, dl360):
    host.bind(NVME1, "nvme").bind(NVME2, "nvme").move_to_group(NVME1, "40").move_to_group(NVME2, "40")
    profile = replace(dl360, devices=[dl360.device_named("ceph-nvme-1"),
                                      replace(dl360.device_named("ceph-nvme-2"), vm="z-ceph-1")])
    plan = plan_host(host.facts(), profile)
    binds = [s for s in plan.changes if s.requirement == "bound-to-vfio"]
    assert len(binds) == 1 and binds[0].args == [NVME1, NVME2]


def test_no_iommu_yet_binding_waits_for_the_reboot(host, dl360):
    host.replace("proc/cmdline", "intel_iommu=on", "intel_iommu=off").remove("sys/kernel/iommu_groups")
    host.bind(NVME1, "nvme")
    plan = plan_host(host.facts(), dl360)
    assert any(s.kind == WAITING and s.requirement == "bound-to-vfio" for s in plan.steps)
    assert plan.reboot_required is False or all(s.kind != CHANGE or s.reboot for s in plan.changes)


def test_firmware_missing_is_manual_with_the_vendor_path(host, dl360):
    host.remove("sys/firmware/acpi/tables/DMAR")
    plan = plan_host(host.facts(), dl360)
    manual = [s for s in plan.steps if s.requirement == "firmware-iommu"]
    assert manual and manual[0].kind == MANUAL and "System Utilities" in manual[0].summary


def test_device_in_a_second_vm_is_never_detached_without_the_option(host, dl360):
    xml = host.read("etc/libvirt/qemu/z-ceph-1.xml")
    hostdev = re.search(r"<hostdev.*?</hostdev>", xml, re.S).group(0)
    host.replace("etc/libvirt/qemu/z-ceph-2.xml", "</devices>", hostdev + "</devices>")
    plan = plan_host(host.facts(), dl360)
    assert [s.kind for s in plan.steps if s.requirement == "assigned-to-vm"] == [MANUAL]
    plan = plan_host(host.facts(), dl360, detach=True)
    step = [s for s in plan.changes if s.requirement == "assigned-to-vm"]
    assert step and step[0].args == ["--detach", "z-ceph-2", NVME1]


def test_host_device_on_vfio_is_given_back(host, dl360):
    host.bind(NVME4, "vfio-pci").write(f"etc/driverctl.d/pci-{NVME4}", "vfio-pci\n")
    plan = plan_host(host.facts(), dl360)
    assert [(s.requirement, s.args) for s in plan.changes] == [("host-device-kept", [NVME4])]


def test_boot_config_edit_keeps_the_file_and_fixes_the_words(host, dl360):
    host.replace("etc/default/grub", 'GRUB_CMDLINE_LINUX_DEFAULT="intel_iommu=on iommu=pt"',
                 'GRUB_CMDLINE_LINUX_DEFAULT="quiet intel_iommu=off"')
    plan = plan_host(host.facts(), dl360)
    step = plan.changes[0]
    assert step.requirement == "cmdline-persistent" and step.reboot and plan.reboot_required
    new = step.files[0].new
    assert 'GRUB_CMDLINE_LINUX_DEFAULT="quiet"' in new and 'GRUB_CMDLINE_LINUX="intel_iommu=on iommu=pt"' in new
    assert "# If you change this file, run 'update-grub'" in new and "GRUB_DISTRIBUTOR=`lsb_release" in new
    assert step.args[:2] == ["--boot", "grub"]



def test_grub_booted_host_with_a_kernel_cmdline_file_gets_both_edited(host, dl360):
    # The audit requires every present source to agree on a grub-booted host, so the fix edits both.
    host.replace("etc/default/grub", '"intel_iommu=on iommu=pt"', '"quiet"')
    host.write("etc/kernel/cmdline", "root=/dev/mapper/vg0-root ro quiet\n")
    step = plan_host(host.facts(), dl360).changes[0]
    assert step.args[:2] == ["--boot", "grub"]
    edited = {c.path: c.new for c in step.files}
    assert set(edited) == {"/etc/default/grub", "/etc/kernel/cmdline"}
    assert edited["/etc/kernel/cmdline"].split() == ["root=/dev/mapper/vg0-root", "ro", "quiet", "intel_iommu=on",
                                                     "iommu=pt"]


def test_systemd_boot_host_gets_only_its_kernel_cmdline_edited(host, dl360):
    host.replace("proc/cmdline", "BOOT_IMAGE=/vmlinuz-5.15.0-91-generic ", "")
    host.write("etc/kernel/cmdline", "root=ZFS=rpool/ROOT/pve-1 boot=zfs\n")
    step = plan_host(host.facts(), dl360).changes[0]
    assert step.args[:2] == ["--boot", "kernel-cmdline"] and [c.path for c in step.files] == ["/etc/kernel/cmdline"]

def test_vfio_ids_in_modprobe_are_replaced_by_per_address_bindings(host, dl360):
    host.write("etc/modprobe.d/vfio.conf", "# passthrough\noptions vfio-pci ids=144d:a808 disable_vga=1\n")
    host.replace("lib/modules/5.15.0-91-generic/modules.builtin", "vfio-pci.ko\n", "")
    plan = plan_host(host.facts(), dl360)
    ids = [s for s in plan.changes if s.requirement == "vfio-ids-scope"]
    assert ids and ids[0].files[0].new.rstrip() == "# passthrough\noptions vfio-pci disable_vga=1"


def test_addresses_are_validated_before_any_command():
    assert checked_address("0000:06:00.0") == "0000:06:00.0"
    for bad in ("0000:06:00.0;reboot", "06:00.0", "10000:e1:00.0", "0000:06:00.8", ""):
        with pytest.raises(PlanError):
            checked_address(bad)


@pytest.mark.parametrize("tools, expected", [
    (["usr/sbin/update-initramfs", "usr/sbin/dracut"], ["update-initramfs"]),  # Debian with dracut installed too
    (["usr/bin/dracut"], ["dracut"]),  # RHEL family (/usr/bin)
    (["usr/sbin/update-initramfs", "usr/sbin/proxmox-boot-tool"], ["update-initramfs", "proxmox-boot-tool"]),
])
def test_modprobe_and_modules_load_changes_are_followed_by_one_initramfs_rebuild(host, dl360, tools, expected):
    for t in tools:
        host.write(t, "#!/bin/sh\n")
    host.write("etc/modprobe.d/vfio.conf", "options vfio-pci ids=144d:a808\n")
    host.replace("lib/modules/5.15.0-91-generic/modules.builtin", "vfio-pci.ko\n", "")
    host.remove("etc/modules-load.d/vfio-pci.conf") if host.path("etc/modules-load.d/vfio-pci.conf").exists() else None
    plan = plan_host(host.facts(), dl360)
    order = [s.requirement for s in plan.changes]
    assert order.count("initramfs") == 1, order
    rebuild = plan.changes[order.index("initramfs")]
    assert order.index("initramfs") > order.index("vfio-ids-scope")
    assert "vfio-modules" not in order or order.index("initramfs") > order.index("vfio-modules")
    assert rebuild.args == expected and rebuild.reboot and plan.reboot_required
    assert rebuild.commands[0] in ("update-initramfs -u -k all", "dracut -f --regenerate-all")


def test_initramfs_rebuild_is_planned_only_where_the_host_has_a_generator(host, dl360):
    host.write("etc/modprobe.d/vfio.conf", "options vfio-pci ids=144d:a808\n")
    host.replace("lib/modules/5.15.0-91-generic/modules.builtin", "vfio-pci.ko\n", "")
    facts = host.facts()
    assert facts.system["boot_tools"] == ""  # the sample copy has no generator: nothing holds a copy
    assert "initramfs" not in [s.requirement for s in plan_host(facts, dl360).steps]
    del facts.system["boot_tools"]  # facts from an older probe: the tools are unknown
    manual = [s for s in plan_host(facts, dl360).steps if s.requirement == "initramfs"]
    assert [s.kind for s in manual] == [MANUAL] and "update-initramfs -u -k all" in manual[0].summary


def test_host_device_held_by_a_running_vm_is_refused_not_unbound(host, dl360):
    host.bind(NVME4, "vfio-pci").write(f"etc/driverctl.d/pci-{NVME4}", "vfio-pci\n")
    live = host.read("run/libvirt/qemu/z-ceph-2.xml")
    hostdev = re.search(r"<hostdev.*?</hostdev>", live, re.S).group(0)
    mine = re.sub(r"bus='0x0\d'", "bus='0x09'", hostdev, count=1)
    assert mine != hostdev
    host.replace("run/libvirt/qemu/z-ceph-2.xml", "</devices>", mine + "</devices>")
    plan = plan_host(host.facts(), dl360)
    refused = [s for s in plan.steps if s.requirement == "host-device-kept"]
    assert [s.kind for s in refused] == [REFUSED] and "running VM z-ceph-2" in refused[0].summary
    assert not [s for s in plan.changes if s.requirement == "host-device-kept"]


# --- after the cmdline-persistent step: the next boot judged as the audit judges it -------------

UBUNTU_CFG = Path(__file__).resolve().parents[2] / "data/grub/ubuntu-22.04-grub.cfg"
UUID = "b2d4f6a8-1c3e-4a5b-9d7f-0e2c4a6b8d10"


def _saved_default(host, saved: str):
    """GRUB_DEFAULT=saved, Ubuntu's regenerated grub.cfg, grubenv naming the saved entry."""
    if "GRUB_DEFAULT=0" in host.read("etc/default/grub"):
        host.replace("etc/default/grub", "GRUB_DEFAULT=0", "GRUB_DEFAULT=saved\nGRUB_SAVEDEFAULT=true")
        host.write("boot/grub/grub.cfg", UBUNTU_CFG.read_text())
    env = f"# GRUB Environment Block\nsaved_entry={saved}\n"
    return host.write("boot/grub/grubenv", env + "#" * (1024 - len(env)))


def test_boot_unmet_judges_the_entry_grub_boots_not_the_first_linux_line(host, dl360):
    # GRUB_SAVEDEFAULT saved the recovery entry (10_linux gives it GRUB_CMDLINE_LINUX only, and the
    # arguments are in GRUB_CMDLINE_LINUX_DEFAULT): the first linux line of grub.cfg has them, the one grub boots not.
    first = next(ln for ln in UBUNTU_CFG.read_text().splitlines() if ln.strip().startswith("linux"))
    assert "intel_iommu=on iommu=pt" in first
    _saved_default(host, f"gnulinux-advanced-{UUID}>gnulinux-5.15.0-91-generic-recovery-{UUID}")
    unmet = boot_unmet(host.facts(), dl360, drop_ids=False)
    assert "entry 'Advanced options for Ubuntu > Ubuntu, with Linux 5.15.0-91-generic (recovery mode)'" in unmet
    assert "intel_iommu=on is missing" in unmet
    _saved_default(host, f"gnulinux-advanced-{UUID}>gnulinux-5.15.0-89-generic-advanced-{UUID}")
    assert boot_unmet(host.facts(), dl360, drop_ids=False) == ""


def test_boot_unmet_when_the_default_is_unknown_wants_every_kernel_entry(host, dl360):
    # default=${saved_entry} and no grubenv to read: the audit cannot tell the entry, so every one must agree.
    _saved_default(host, "").remove("boot/grub/grubenv")
    unmet = boot_unmet(host.facts(), dl360, drop_ids=False)
    assert "which entry boots is unknown" in unmet and "(recovery mode)" in unmet and "intel_iommu=on" in unmet


def test_boot_unmet_names_a_vfio_ids_left_when_the_step_was_to_drop_it(host, dl360):
    host.replace("etc/default/grub", 'GRUB_CMDLINE_LINUX=""', 'GRUB_CMDLINE_LINUX="vfio-pci.ids=144d:a808"')
    host.write("boot/grub/grub.cfg", host.read("boot/grub/grub.cfg").replace("iommu=pt", "iommu=pt vfio-pci.ids=144d:a808"))
    facts = host.facts()
    assert boot_unmet(facts, dl360, drop_ids=False) == ""  # the audit's cmdline-persistent does not look at ids
    unmet = boot_unmet(facts, dl360, drop_ids=True)
    assert "/etc/default/grub: still has vfio-pci.ids" in unmet and "/boot/grub/grub.cfg" in unmet


def test_a_step_the_audit_finds_unmet_fails_and_rolls_back(host, dl360):
    """apply_plan's verify: the step's script said done, the host read again says otherwise."""
    from iommu_audit.fix import apply
    calls = []

    class Done:
        rc, stdout, stderr = 0, "iommu-audit: done (reboot required)", ""

    class FakeHost:
        def run(self, requirement, *args):
            calls.append((requirement, *args))
            return Done

        def sh(self, script, *args):
            calls.append(("sh", *args))
            return Done

    _saved_default(host, f"gnulinux-advanced-{UUID}>gnulinux-5.15.0-91-generic-recovery-{UUID}")
    step = Step("cmdline-persistent", "node1", "kernel arguments", args=["--boot", "grub"], repairs=["cmdline-persistent"])
    lines = []
    outcome = apply.apply_plan(FakeHost(), HostPlan("node1", [step], {}), "20261201T000000Z-abcd", lines.append,
                               verify=lambda s: boot_unmet(host.facts(), dl360, "vfio-ids-scope" in s.repairs))
    assert outcome == "rolled-back" and step.status == "rolled-back"
    assert "FAILED: verify (the audit's own rule, on the host read again)" in step.output
    assert "(recovery mode)" in step.output and any("step 1 failed" in ln for ln in lines)
    step_dir = "/var/log/iommu-audit/20261201T000000Z-abcd/01-cmdline-persistent"
    assert ("cmdline-persistent", "--step-dir", step_dir, "--boot", "grub") in calls
    failure = next(ln for ln in step.output.splitlines() if ln.startswith("FAILED: verify"))
    assert ("sh", step_dir, failure) in calls  # the failure is in the step's log on the host
    assert calls[-1] == ("cmdline-persistent", "--undo", "--step-dir", step_dir)


# --- the plan plans what the audit fails (or says it cannot) ------------------------------------

def test_vfio_blocked_at_boot_is_a_manual_step_not_a_load(host, dl360):
    # Loaded now, blacklisted for the next boot: loading it and writing modules-load.d would not make it pass.
    from tests.unit.rules.test_kernel import modular_vfio
    modular_vfio(host).write("etc/modprobe.d/no-vfio.conf", "blacklist vfio-pci\n")
    plan = plan_host(host.facts(), dl360)
    [step] = [s for s in plan.steps if s.requirement == "vfio-modules"]
    assert step.kind == MANUAL and "'blacklist vfio-pci' in /etc/modprobe.d/no-vfio.conf" in step.summary
    assert not [s for s in plan.steps if s.requirement == "initramfs"]


def test_a_device_only_hot_plugged_into_its_vm_is_attached_to_the_definition(host, dl360):
    from tests.unit.rules.test_vms import HOTPLUG_NVME1
    host.replace("etc/libvirt/qemu/z-ceph-1.xml", "bus='0x06' slot='0x00'", "bus='0x07' slot='0x00'")
    host.replace("run/libvirt/qemu/z-ceph-1.xml", "bus='0x06' slot='0x00'", "bus='0x07' slot='0x00'")
    host.replace("run/libvirt/qemu/z-ceph-1.xml", "    <interface type='bridge'>", HOTPLUG_NVME1 + "    <interface type='bridge'>")
    plan = plan_host(host.facts(), dl360)
    assert "assigned-to-vm[ceph-nvme-1]" in plan.failing
    assert [s.args for s in plan.changes if s.subject == "ceph-nvme-1"] == [["z-ceph-1", NVME1]]


def test_a_disk_of_the_passed_controller_in_another_vm_is_a_manual_step(host, dl360):
    from iommu_audit.fix.plan import _Planner
    from iommu_audit.rules import vms
    passed = replace(dl360.device_named("host-nvme-4"), vm="z-ceph-3")
    host.replace("etc/libvirt/qemu/z-ceph-3.xml", "bus='0x08' slot='0x00'", "bus='0x09' slot='0x00'")
    host.replace("etc/libvirt/qemu/z-gluster-1.xml", "<source file='/var/lib/libvirt/images/z-gluster-1.qcow2'/>",
                 "<source file='/dev/nvme0n1p3'/>")
    facts = host.facts()
    v = vms.assigned_to_vm(facts, passed)
    assert not v.ok and "z-gluster-1 has /dev/nvme0n1p3, a disk on 0000:09:00.0" in v.found
    [step] = _Planner(facts, dl360, False).assign(passed, NVME4, v)
    assert step.kind == MANUAL and "z-gluster-1 has /dev/nvme0n1p3, a disk on 0000:09:00.0" in step.summary
    assert "virsh detach-disk z-gluster-1 /dev/nvme0n1p3 --config" in step.summary


def test_every_route_the_audit_fails_for_a_disk_is_planned_or_left_to_a_person(host, dl360):
    from iommu_audit.rules import disks
    from tests.unit.rules.test_disks import SDA_XML, add_partition
    hdd1, wwn = dl360.device_named("gluster-hdd-1"), "/dev/disk/by-id/wwn-0x5000c500b1c2d3e4"

    def steps():
        facts = host.facts()
        assert not disks.disk_assigned_to_vm(facts, hdd1).ok
        return [(s.kind, s.args, s.summary) for s in plan_host(facts, dl360).steps if s.subject == "gluster-hdd-1"]
    # In the running VM only (attach-disk --live): the persistent definition gets it.
    host.replace(SDA_XML, f"<source dev='{wwn}'/>", "<source dev='/var/lib/libvirt/images/z-gluster-1-data.raw'/>")
    assert [(k, a) for k, a, _ in steps()] == [(CHANGE, ["z-gluster-1", wwn])]
    host.replace(SDA_XML, "<source dev='/var/lib/libvirt/images/z-gluster-1-data.raw'/>", f"<source dev='{wwn}'/>")
    # A partition of it in another VM, and the disk as another VM's file source: a person detaches them.
    add_partition(host, "sda", "sda1")
    host.replace("etc/libvirt/qemu/z-gluster-2.xml", "wwn-0x5000c500b1c2d3f5", "wwn-0x5000c500b1c2d3e4-part1")
    host.replace("etc/libvirt/qemu/z-ceph-2.xml", "/var/lib/libvirt/images/z-ceph-2.qcow2", "/dev/sda")
    manual = sorted(s for k, _, s in steps() if k == MANUAL)
    assert len(manual) == 2 and not [k for k, _, _ in steps() if k == CHANGE]
    assert manual[0].startswith(f"z-ceph-2 also reaches {wwn} through /dev/sda: --fix never takes a disk away")
    assert manual[1].startswith(f"z-gluster-2 also reaches {wwn} through {wwn}-part1")
