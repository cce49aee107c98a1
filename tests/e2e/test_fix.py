"""--fix end to end: a real kernel (QEMU guest with 4 NVMe + 1 behind a bridge) audited and fixed over
SSH, its VMs in a real libvirtd (the private one, reached through the guest's relayed virsh).

One boot for the whole story: dry run; then the host of the second act (the 4th NVMe is the host's
own drive, left on vfio-pci and in a VM by someone; a model-wide vfio-pci ids= in modprobe.d; the
first drive also in a wrong VM; a whole disk for z-data): the give-back refused while a process
holds the device's /dev/vfio group, a run refused while another holds the host's lock, a declined
question, a fault rolled back, the fix (answered at a real terminal), --fix-detach, a second fix
with nothing to do, the undo. The guest's root file system is its initramfs, so a reboot would lose
/etc: that --fix's binding and boot arguments survive a reboot is tested in tests/e2e/test_reboot.py.
"""

import re
import shlex

import pytest

from tests.e2e.audit_run import QEMU_NVME_ID, audit, put_file, ssh_args, write_profile
from tests.e2e.harness import virsh_relay
from tests.e2e.harness.qemu import by_id_path

VMS = ("z-ceph-1", "z-ceph-2", "z-ceph-3")


@pytest.fixture(scope="module")
def fixhost(boot_guest, libvirtd_server):
    for vm in (*VMS, "z-data"):
        libvirtd_server.virsh("undefine", vm, check=False)
        libvirtd_server.define_domain(vm)
    # no_timer_check: under a loaded TCG host the kernel's IO-APIC timer test can fail and panic the boot.
    g = boot_guest("e2e-fix", fresh=True, iommu="intel", cmdline_extra="intel_iommu=on no_timer_check", nvme=4,
                   bridge_nvme=1, mounted_nvme=3,
                   guestfwd=virsh_relay.guestfwd(libvirtd_server.uri))
    put_file(g, "/usr/sbin/virsh", virsh_relay.GUEST_SHIM)
    g.run("chmod 755 /usr/sbin/virsh", check=True)
    put_file(g, "/run/libvirtd.pid", "1\n")  # the probe asks virsh only while a libvirt daemon runs
    # A Debian-like host's initramfs tool: records each call and what modprobe.d said at that moment.
    put_file(g, "/usr/sbin/update-initramfs", "#!/bin/sh\necho \"$* ids=$(grep -c '^options.*ids=' /etc/modprobe.d/vfio.conf)\" "
             ">> /var/log/update-initramfs.calls\n")
    g.run("chmod 755 /usr/sbin/update-initramfs", check=True)
    put_file(g, "/etc/default/grub", 'GRUB_DEFAULT=0\nGRUB_CMDLINE_LINUX_DEFAULT="intel_iommu=on"\nGRUB_CMDLINE_LINUX=""\n')
    dev = g.run(f"readlink -f /dev/disk/by-id/nvme-QEMU_NVMe_Ctrl_{g.nvme_serials[3]}", check=True)[1].strip()
    g.run(f"mkdir -p /srv/data && mount -t ext4 {dev} /srv/data", check=True)
    g.data_dev = dev
    yield g
    for vm in (*VMS, "z-data"):
        libvirtd_server.virsh("undefine", vm, check=False)


def profile(tmp_path, g, data_role="z-data"):
    """The 4th NVMe: passed to z-data (mounted on the host: refused), or the host's own (data_role None)."""
    devices = [{"name": f"ceph-nvme-{i + 1}", "address": a, "id": QEMU_NVME_ID, "vm": VMS[i]}
               for i, a in enumerate(g.nvme_addresses[:3])]
    devices.append({"name": "data-nvme", "address": g.nvme_addresses[3], "id": QEMU_NVME_ID,
                    **({"vm": data_role} if data_role else {"host": True})})
    disks = [] if data_role else [{"name": "data-disk", "by_id": by_id_path(g.bridge_nvme_serials[0]).rsplit("/", 1)[1],
                                    "vm": "z-data"}]
    return write_profile(tmp_path / f"e2e-fix{'' if data_role else '-2'}.yaml", devices=devices, disks=disks)


def state(g, server) -> dict:
    """Everything --fix may change: drivers, overrides, files in /etc, modules, VM definitions."""
    drivers = g.run("for a in " + " ".join(g.nvme_addresses) + "; do d=/sys/bus/pci/devices/$a; "
                    "printf '%s %s %s\\n' $a $(basename $(readlink $d/driver 2>/dev/null) 2>/dev/null) "
                    "\"$(cat $d/driver_override)\"; done", check=True)[1]
    files = g.run("find /etc/driverctl.d /etc/udev/rules.d /etc/modules-load.d /etc/modprobe.d -type f 2>/dev/null "
                  "| sort | xargs -r md5sum; grep -c '^vfio_pci ' /proc/modules", check=False)[1]
    hostdevs = {vm: sorted(re.findall(r"<hostdev .*?<source>\s*<address [^>]*slot='(0x[0-9a-f]+)'", server.dumpxml(vm),
                                      re.S)) for vm in (*VMS, "z-data")}
    disks = re.findall(r"<source dev='([^']+)'", server.dumpxml("z-data"))
    return {"drivers": drivers, "files": files, "hostdevs": hostdevs, "disks": disks}


def initramfs_calls(g) -> list[str]:
    return g.run("cat /var/log/update-initramfs.calls 2>/dev/null", check=False)[1].splitlines()


def slot(addr: str) -> str:
    return "0x" + addr.split(":")[2].split(".")[0]


def test_fix_story(fixhost, libvirtd_server, tmp_path):
    g, server = fixhost, libvirtd_server
    p = profile(tmp_path, g)
    first = state(g, server)
    assert "nvme" in first["drivers"] and set(map(tuple, first["hostdevs"].values())) == {()}

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

    # Act two: the 4th NVMe is the host's own drive, but someone left it on vfio-pci and in z-data; a
    # model-wide ids= sits in modprobe.d (it would take every drive of the model at boot); the first
    # drive is also defined in z-ceph-2; the disk behind the bridge is profiled for z-data.
    p = profile(tmp_path, g, data_role=None)
    data, ceph1 = g.nvme_addresses[3], g.nvme_addresses[0]
    g.run("umount /srv/data", check=True)
    group = g.bind_vfio(data)
    put_file(g, "/etc/modprobe.d/vfio.conf", f"# passthrough\noptions vfio-pci ids={QEMU_NVME_ID}\n")
    server.attach_hostdev("z-data", data)
    server.attach_hostdev("z-ceph-2", ceph1)
    disk = by_id_path(g.bridge_nvme_serials[0])
    first = state(g, server)
    assert first["hostdevs"]["z-data"] == [slot(data)] and first["disks"] == []

    # The give-back is refused while a process (a VM's QEMU) holds the device's VFIO group open.
    holder = g.run(f"sh -c 'exec 3<>/dev/vfio/{group}; exec sleep 300' >/dev/null 2>&1 & echo $!", check=True)[1].strip()
    try:
        r = host.run("host-device-kept", "--dry-run", data)
        assert r.rc == 3 and f"refused: {data} is in use: /dev/vfio/{group} is open by pid" in r.stderr, r.stderr
        assert "(sleep)" in r.stderr
    finally:
        g.run(f"kill {holder}", check=True)

    # A run in progress (held from a second SSH session) makes --fix refuse, with one line naming it.
    sleeper = g.run("sleep 300 >/dev/null 2>&1 & echo $!", check=True)[1].strip()
    boot = g.run("cat /proc/sys/kernel/random/boot_id", check=True)[1].strip()
    assert host.lib("lock_take", "20261201T000000Z-0ff1", boot, sleeper, "admin-console").rc == 0
    run = audit(tmp_path, p, *ssh_args(g), "--fix", "--yes", "-k", "facts_gathered")
    assert run.rc == 1, run.output
    assert re.search(r"\ne2e-fix: refused: run 20261201T000000Z-0ff1 holds /run/iommu-audit.lock since "
                     r"\S+ \(from admin-console, pid " + sleeper + r"\): wait for it to finish; if that run is gone, "
                     r"rm /run/iommu-audit.lock and try again\n", run.output), run.output
    assert "applying run" not in run.output and state(g, server) == first
    g.run(f"kill {sleeper}", check=True)

    # At a terminal, --fix asks; "no" changes nothing. The lock's holder is gone: taken over, with a note.
    run = audit(tmp_path, p, *ssh_args(g), "--fix", answer="no")
    assert "is stale (process " + sleeper + " is gone): taking it over" in run.output, run.output
    assert "not applied: nothing changed" in run.output, run.output
    assert state(g, server) == first
    plan = [ln.strip() for ln in run.output.splitlines() if re.match(r"\s+(\d+\.|--) \[", ln)]
    order = [re.search(r"\] (\S+) \(", ln).group(1) for ln in plan if not ln.startswith("--")]
    assert order.index("vfio-ids-scope") + 1 == order.index("initramfs") < order.index("host-device-kept") \
        < order.index("bound-to-vfio") < order.index("disk-assigned-to-vm"), plan
    assert f"$ update-initramfs -u -k all" in run.output
    assert any(ln.startswith("-- [MANUAL] assigned-to-vm (ceph-nvme-1)") and "also defined in z-ceph-2" in ln
               for ln in plan), plan
    assert any(ln.startswith("-- [MANUAL] assigned-to-vm (data-nvme)") and "also defined in z-data" in ln
               for ln in plan), plan
    assert initramfs_calls(g) == []

    # A bind that cannot succeed: driver_override of the third drive is a bind mount of /dev/null.
    third = g.nvme_addresses[2]
    g.run(f"mount --bind /dev/null /sys/bus/pci/devices/{third}/driver_override", check=True)
    try:
        run = audit(tmp_path, p, *ssh_args(g), "--fix", "--yes")
    finally:
        g.run(f"umount /sys/bus/pci/devices/{third}/driver_override", check=True)
    assert f"{third} is on nvme after the rebind, not vfio-pci" in run.output, run.output
    assert "rolling back this run's steps" in run.output and "rolled-back" in run.output and run.rc == 1
    assert state(g, server) == first, run.output
    # The initramfs was rebuilt after the modprobe.d edit, and again last in the rollback, after the restore.
    assert initramfs_calls(g) == ["-u -k all ids=0", "-u -k all ids=1"], run.output

    # The fix, answered "yes" at a terminal.
    run = audit(tmp_path, p, *ssh_args(g), "--fix", answer="yes")
    run_id = re.search(r"undo with --undo (\S+)", run.output).group(1)
    for i in (1, 2, 3):
        for check in ("bound_to_vfio", "vfio_binding_persistent"):
            assert run.outcome(f"test_{check}[e2e-fix-ceph-nvme-{i}]") == "passed", run.output
    for i in (2, 3):
        assert run.outcome(f"test_assigned_to_vm[e2e-fix-ceph-nvme-{i}]") == "passed", run.output
    assert run.outcome("test_assigned_to_vm[e2e-fix-ceph-nvme-1]") == "failed"  # still in z-ceph-2 as well
    assert run.outcome("test_vfio_ids_scope[e2e-fix]") == "passed"
    assert run.outcome("test_disk_assigned_to_vm[e2e-fix-data-disk]") == "passed", run.output
    assert "passed to VM z-data" in run.messages["test_host_device_kept[e2e-fix-data-nvme]"]  # not taken from it
    fixed = state(g, server)
    assert fixed["hostdevs"] == {"z-ceph-1": [slot(ceph1)], "z-ceph-2": [slot(ceph1), slot(g.nvme_addresses[1])],
                                 "z-ceph-3": [slot(third)], "z-data": [slot(data)]}
    assert fixed["disks"] == [disk]
    assert re.search(r"<disk type='block' device='disk'>.*?<source dev='" + re.escape(disk) + "'/>",
                     server.dumpxml("z-data"), re.S)
    assert f"{data} nvme" in fixed["drivers"]  # given back to the host
    for addr in g.nvme_addresses[:3]:
        assert f"{addr} vfio-pci vfio-pci" in fixed["drivers"] and f"pci-{addr}" in fixed["files"]
    assert initramfs_calls(g)[2:] == ["-u -k all ids=0"]  # once, after the modprobe.d change
    log = g.run(f"cat /var/log/iommu-audit/{shlex.quote(run_id)}/*/status", check=True)[1]
    assert log.splitlines() and all(line.startswith("done") for line in log.splitlines()), log

    # --fix-detach takes the devices from the VMs that must not have them; nothing else is redone.
    run = audit(tmp_path, p, *ssh_args(g), "--fix", "--yes", "--fix-detach")
    assert re.search(r"host e2e-fix: 2 change\(s\)", run.output), run.output
    assert f"remove {ceph1} from z-ceph-2 (--fix-detach)" in run.output and f"remove {data} from z-data" in run.output
    assert "[e2e-fix] applied" in run.output, run.output
    assert run.outcome("test_assigned_to_vm[e2e-fix-ceph-nvme-1]") == "passed", run.output
    assert run.outcome("test_host_device_kept[e2e-fix-data-nvme]") == "passed", run.output
    detached = state(g, server)
    assert detached["hostdevs"] == {**fixed["hostdevs"], "z-ceph-2": [slot(g.nvme_addresses[1])], "z-data": []}

    # Again: nothing to do, nothing changed (no hostdev or disk defined twice).
    run = audit(tmp_path, p, *ssh_args(g), "--fix", "--yes")
    assert "nothing to do" in run.output and "applying run" not in run.output, run.output
    assert state(g, server) == detached

    # Undo the fix: the first state again, but for the VM entries --fix-detach removed (a run of its own);
    # the initramfs rebuilt last, with the old modprobe.d back.
    run = audit(tmp_path, p, *ssh_args(g), f"--undo={run_id}")
    assert f"undo of {run_id}: undone" in run.output, run.output
    assert state(g, server) == {**first, "hostdevs": {**first["hostdevs"], "z-ceph-2": [], "z-data": []}}
    assert initramfs_calls(g)[-1] == "-u -k all ids=1"
