"""--fix end to end: a real kernel (QEMU guest with 4 NVMe) audited and fixed over SSH, its VMs in a
real libvirtd (the private one, reached through the guest's relayed virsh).

One boot for the whole story: dry run, a fault rolled back, the fix, a second fix with nothing
to do, the undo. The guest's root file system is its initramfs, so a reboot would lose /etc:
the persistent binding's survival across a reboot is not tested here (see the README).
"""

import re
import shlex

import pytest

from tests.e2e.audit_run import QEMU_NVME_ID, audit, put_file, ssh_args, write_profile
from tests.e2e.harness import virsh_relay

VMS = ("z-ceph-1", "z-ceph-2", "z-ceph-3")


@pytest.fixture(scope="module")
def fixhost(boot_guest, libvirtd_server):
    for vm in (*VMS, "z-data"):
        libvirtd_server.virsh("undefine", vm, check=False)
        libvirtd_server.define_domain(vm)
    # no_timer_check: under a loaded TCG host the kernel's IO-APIC timer test can fail and panic the boot.
    g = boot_guest("e2e-fix", fresh=True, iommu="intel", cmdline_extra="intel_iommu=on no_timer_check", nvme=4,
                   mounted_nvme=3,
                   guestfwd=virsh_relay.guestfwd(libvirtd_server.uri))
    put_file(g, "/usr/sbin/virsh", virsh_relay.GUEST_SHIM)
    g.run("chmod 755 /usr/sbin/virsh", check=True)
    put_file(g, "/run/libvirtd.pid", "1\n")  # the probe asks virsh only while a libvirt daemon runs
    put_file(g, "/etc/default/grub", 'GRUB_DEFAULT=0\nGRUB_CMDLINE_LINUX_DEFAULT="intel_iommu=on"\nGRUB_CMDLINE_LINUX=""\n')
    dev = g.run(f"readlink -f /dev/disk/by-id/nvme-QEMU_NVMe_Ctrl_{g.nvme_serials[3]}", check=True)[1].strip()
    g.run(f"mkdir -p /srv/data && mount -t ext4 {dev} /srv/data", check=True)
    g.data_dev = dev
    yield g
    for vm in (*VMS, "z-data"):
        libvirtd_server.virsh("undefine", vm, check=False)


def profile(tmp_path, g):
    devices = [{"name": f"ceph-nvme-{i + 1}", "address": a, "id": QEMU_NVME_ID, "vm": VMS[i]}
               for i, a in enumerate(g.nvme_addresses[:3])]
    devices.append({"name": "data-nvme", "address": g.nvme_addresses[3], "id": QEMU_NVME_ID, "vm": "z-data"})
    return write_profile(tmp_path / "e2e-fix.yaml", devices=devices)


def state(g, server) -> dict:
    """Everything --fix may change: drivers, overrides, files in /etc, modules, VM definitions."""
    drivers = g.run("for a in " + " ".join(g.nvme_addresses) + "; do d=/sys/bus/pci/devices/$a; "
                    "printf '%s %s %s\\n' $a $(basename $(readlink $d/driver 2>/dev/null) 2>/dev/null) "
                    "\"$(cat $d/driver_override)\"; done", check=True)[1]
    files = g.run("find /etc/driverctl.d /etc/udev/rules.d /etc/modules-load.d -type f 2>/dev/null | sort; "
                  "grep -c '^vfio_pci ' /proc/modules", check=False)[1]
    hostdevs = {vm: len(re.findall(r"<hostdev ", server.dumpxml(vm))) for vm in (*VMS, "z-data")}
    return {"drivers": drivers, "files": files, "hostdevs": hostdevs}


def test_fix_story(fixhost, libvirtd_server, tmp_path):
    g, server = fixhost, libvirtd_server
    p = profile(tmp_path, g)
    first = state(g, server)
    assert "nvme" in first["drivers"] and set(first["hostdevs"].values()) == {0}

    # The scripts keep the guard themselves: run by hand on the mounted drive, the bind is refused.
    import testinfra
    from iommu_audit.fix import apply
    host = apply.Host(testinfra.get_host(f"ssh://{g.name}", ssh_config=str(g.ssh_config_path)))
    r = host.run("bound-to-vfio", "--dry-run", g.nvme_addresses[3])
    assert r.rc == 3 and f"{g.data_dev} is mounted on /srv/data" in r.stderr, r.stderr

    # Without a terminal and without --yes, --fix refuses before anything runs.
    run = audit(tmp_path, p, *ssh_args(g), "--fix")
    assert run.rc == 4 and "--yes" in run.output

    # Dry run: the plan, nothing changed.
    run = audit(tmp_path, p, *ssh_args(g), "--fix", "--dry-run", f"--plan-json={tmp_path / 'plan.json'}")
    for addr in g.nvme_addresses[:3]:
        assert f"bind {addr} (nvme) to vfio-pci now" in run.output, run.output
    assert f"[REFUSED] bound-to-vfio (data-nvme): refused: {g.nvme_addresses[3]} is used by the host: " \
           f"{g.data_dev} is mounted on /srv/data" in run.output
    assert "virsh attach-device z-ceph-1 <hostdev" in run.output and "dry run: nothing changed" in run.output
    assert (tmp_path / "plan.json").exists()
    assert state(g, server) == first
    assert run.outcome("test_bound_to_vfio[e2e-fix-ceph-nvme-1]") == "failed"

    # A bind that cannot succeed: driver_override of the third drive is a bind mount of /dev/null.
    third = g.nvme_addresses[2]
    g.run(f"mount --bind /dev/null /sys/bus/pci/devices/{third}/driver_override", check=True)
    try:
        run = audit(tmp_path, p, *ssh_args(g), "--fix", "--yes")
    finally:
        g.run(f"umount /sys/bus/pci/devices/{third}/driver_override", check=True)
    assert f"{third} is on nvme after the rebind, not vfio-pci" in run.output, run.output
    assert "rolling back this run's steps" in run.output and "rolled-back" in run.output
    assert state(g, server) == first, run.output

    # The fix.
    run = audit(tmp_path, p, *ssh_args(g), "--fix", "--yes")
    run_id = re.search(r"undo with --undo (\S+)", run.output).group(1)
    for i in (1, 2, 3):
        for check in ("bound_to_vfio", "vfio_binding_persistent", "assigned_to_vm"):
            assert run.outcome(f"test_{check}[e2e-fix-ceph-nvme-{i}]") == "passed", run.output
    assert run.outcome("test_vfio_modules[e2e-fix]") == "passed"
    assert run.outcome("test_bound_to_vfio[e2e-fix-data-nvme]") == "failed"
    assert "/srv/data" in run.messages["test_device_not_used_by_host[e2e-fix-data-nvme]"]
    fixed = state(g, server)
    assert fixed["hostdevs"] == {"z-ceph-1": 1, "z-ceph-2": 1, "z-ceph-3": 1, "z-data": 0}
    assert f"{g.nvme_addresses[3]} nvme" in fixed["drivers"]
    for addr in g.nvme_addresses[:3]:
        assert f"{addr} vfio-pci vfio-pci" in fixed["drivers"] and f"pci-{addr}" in fixed["files"]
    log = g.run(f"cat /var/log/iommu-audit/{shlex.quote(run_id)}/*/status", check=True)[1]
    assert log.split() == ["done"] * len(log.split())

    # Again: nothing to do, nothing changed (no hostdev defined twice).
    run = audit(tmp_path, p, *ssh_args(g), "--fix", "--yes")
    assert "nothing to do" in run.output and "applying run" not in run.output, run.output
    assert state(g, server) == fixed

    # Undo: the first state again.
    run = audit(tmp_path, p, *ssh_args(g), f"--undo={run_id}")
    assert f"undo of {run_id}: undone" in run.output, run.output
    assert state(g, server) == first
