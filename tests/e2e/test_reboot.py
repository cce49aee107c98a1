"""--fix's persistent binding survives a real reboot, and a real grub-mkconfig line boots with the IOMMU on.

A guest with Debian's systemd-udevd (qemu.Guest(udev=True)) and a persistent disk holding /etc/driverctl.d,
/etc/udev/rules.d, /etc/modules-load.d, ... is fixed over SSH as in test_fix.py, powered off, and booted in a
new QEMU with the same disks. Nothing else is done before the checks: at boot nvme takes the drives first
(the /init loads it before udev, as a host's initramfs does); the persisted rule must take them back.
Two mechanisms, one boot pair each:
- udev-rule: no driverctl on the host, so --fix writes /etc/driverctl.d/pci-<addr> + our udev rule
  (fixes/vfio-binding-persistent.sh) and real udevd runs that rule at coldplug;
- driverctl: Debian's driverctl package; --fix runs `driverctl set-override`, and at boot driverctl's own
  rule asks systemd for driverctl@pci-<addr>.service. There is no systemd in the guest: its /init plays
  systemd's part for such units (the real unit file's ConditionPathExists= and ExecStart=).
The second boot of each pair uses the kernel arguments of the `linux` line that Debian's real grub-mkconfig
wrote after cmdline-persistent.sh (test_grub_mkconfig.regenerate), on a VT-d guest without the harness's
intel_iommu=on.
"""

import json
import shlex

import pytest

from tests.e2e.audit_run import QEMU_NVME_ID, audit, put_file, ssh_args, write_profile
from tests.e2e.harness import virsh_relay
from tests.e2e.test_grub_mkconfig import linux_line, regenerate

VMS = ("z-ceph-1", "z-ceph-2", "z-ceph-3")
RULE = "/etc/udev/rules.d/89-iommu-audit-vfio.rules"
# Under a loaded TCG host the kernel's IO-APIC timer test can fail and panic the boot (NOTES 03:05):
# the harness adds this to every boot; it is not part of what is being proven.
HARNESS_ARGS = "no_timer_check"


@pytest.fixture(scope="module")
def grub(tmp_path_factory, dl360):
    """(kernel arguments of the regenerated `linux` line, the /etc/default/grub the fix wrote)."""
    out = regenerate(tmp_path_factory.mktemp("grub"), dl360)
    line = linux_line((out / "cfg.after").read_text())
    # `linux /vmlinuz-... root=UUID=... ro ARGS`: the harness boots the kernel directly (-kernel) with the
    # initramfs as root, so the image path and root= do not apply; every other argument is passed as written.
    args = [a for a in shlex.split(line)[2:] if not a.startswith(("root=", "BOOT_IMAGE="))]
    return " ".join(args), (out / "grub.after").read_text()


def prepare(g, grub_default: str) -> None:
    """What does not survive a reboot in this guest (its root fs is the initramfs): the virsh relay, the
    libvirtd pid file the probe looks for, the mounted 4th drive."""
    put_file(g, "/usr/sbin/virsh", virsh_relay.GUEST_SHIM)
    g.run("chmod 755 /usr/sbin/virsh", check=True)
    put_file(g, "/run/libvirtd.pid", "1\n")
    put_file(g, "/etc/default/grub", grub_default)  # on the persistent disk
    g.run(f"mkdir -p /srv/data && mount -t ext4 $(readlink -f /dev/disk/by-id/nvme-QEMU_NVMe_Ctrl_{g.nvme_serials[3]}) "
          "/srv/data", check=True)


def drivers(g) -> dict[str, tuple[str, str]]:
    """{address: (driver, driver_override)} of the four NVMe functions."""
    out = g.run("for a in " + " ".join(g.nvme_addresses) + "; do d=/sys/bus/pci/devices/$a; printf '%s %s %s\\n' "
                "$a $(basename $(readlink $d/driver 2>/dev/null) 2>/dev/null || echo none) \"$(cat $d/driver_override)\"; "
                "done", check=True)[1]
    return {a: (drv, ovr) for a, drv, ovr in (line.split() for line in out.splitlines())}


@pytest.mark.parametrize("mechanism", ["udev-rule", "driverctl"])
def test_fix_survives_reboot(mechanism, boot_guest, libvirtd_server, grub, tmp_path):
    server, (grub_args, grub_default) = libvirtd_server, grub
    for vm in (*VMS, "z-data"):
        server.virsh("undefine", vm, check=False)
        server.define_domain(vm)
    g = boot_guest(f"e2e-reboot-{mechanism}", fresh=True, iommu="intel", cmdline_extra=f"intel_iommu=on {HARNESS_ARGS}",
                   nvme=4, mounted_nvme=3, guestfwd=virsh_relay.guestfwd(server.uri),
                   udev=True, driverctl=mechanism == "driverctl", persistent_disk=True)
    try:
        prepare(g, grub_default)
        devices = [{"name": f"ceph-nvme-{i + 1}", "address": a, "id": QEMU_NVME_ID, "vm": VMS[i]}
                   for i, a in enumerate(g.nvme_addresses[:3])]
        devices.append({"name": "data-nvme", "address": g.nvme_addresses[3], "id": QEMU_NVME_ID, "vm": "z-data"})
        p = write_profile(tmp_path / "e2e-reboot.yaml", devices=devices)
        assert {d for d, _ in drivers(g).values()} == {"nvme"}

        run = audit(tmp_path, p, *ssh_args(g), "--fix", "--yes")
        assert "undo with --undo" in run.output, run.output
        for i in (1, 2, 3):
            assert run.outcome(f"test_vfio_binding_persistent[{g.name}-ceph-nvme-{i}]") == "passed", run.output
        rule = g.run(f"cat {RULE}")[1]
        assert bool(rule) == (mechanism == "udev-rule"), rule  # driverctl's own rule does it when installed

        # Power off; a new QEMU, same disks, the regenerated grub line (no harness intel_iommu=on).
        g.reboot(cmdline_extra=f"{grub_args} {HARNESS_ARGS}")
        now = drivers(g)
        for a in g.nvme_addresses[:3]:
            assert now[a] == ("vfio-pci", "vfio-pci"), (now, g.console()[-4000:])
        assert now[g.nvme_addresses[3]] == ("nvme", "(null)"), now
        if mechanism == "driverctl":
            for a in g.nvme_addresses[:3]:
                assert f"start driverctl@pci-{a}.service: /usr/sbin/driverctl load-override pci/{a}" in g.console()
        assert f"iommu_audit.hostname={g.name} {grub_args} {HARNESS_ARGS}" in g.run("cat /proc/cmdline", check=True)[1]
        dmesg = g.run("dmesg", check=True)[1]
        assert "DMAR: IOMMU enabled" in dmesg and g.iommu_groups(), dmesg[-3000:]
        for a in g.nvme_addresses[:3]:  # the ordering a real boot has: nvme took each drive before vfio-pci loaded
            assert -1 < dmesg.find(f": pci function {a}") < dmesg.find("VFIO - User Level meta-driver"), dmesg[-3000:]

        # The re-audit, with nothing done in between but what the harness re-creates (virsh relay, the mount).
        prepare(g, grub_default)
        p = write_profile(tmp_path / "e2e-reboot.yaml", devices=devices, require=["iommu=pt"])
        run = audit(tmp_path, p, *ssh_args(g), f"--json={tmp_path / 'after.json'}")
        for i in (1, 2, 3):
            for check in ("bound_to_vfio", "vfio_binding_persistent", "assigned_to_vm"):
                assert run.outcome(f"test_{check}[{g.name}-ceph-nvme-{i}]") == "passed", run.output
        # The audit names what applies the override at boot: the mechanism this boot just used.
        applier = (f"driverctl's /usr/lib/udev/rules.d/05-driverctl.rules and /usr/lib/systemd/system/driverctl@.service"
                   if mechanism == "driverctl" else RULE)
        found = {r["subject"]: r["found"] for r in json.loads((tmp_path / "after.json").read_text())["judged"]["results"]
                 if r["requirement"] == "vfio-binding-persistent"}
        for i, a in enumerate(g.nvme_addresses[:3]):
            assert f"/etc/driverctl.d/pci-{a} (applied at boot by {applier})" in found[f"ceph-nvme-{i + 1}"], found
        for check in ("cmdline_iommu", "iommu_active"):
            assert run.outcome(f"test_{check}[{g.name}]") == "passed", run.messages.get(f"test_{check}[{g.name}]")
        assert run.outcome(f"test_bound_to_vfio[{g.name}-data-nvme]") == "failed"
    finally:
        g.close()
        for vm in (*VMS, "z-data"):
            server.virsh("undefine", vm, check=False)
