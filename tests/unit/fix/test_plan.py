"""Plans computed from copies of the sample host, broken one thing at a time."""

import re
from dataclasses import replace

import pytest

from iommu_audit.fix.plan import CHANGE, MANUAL, REFUSED, WAITING, PlanError, checked_address, plan_host

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
