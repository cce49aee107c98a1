"""fixes/*.sh run as an admin runs them, on a copy of a host's files (IOMMU_AUDIT_ROOT), under dash
and busybox sh: usage, refusals, guarded atomic writes, backups and --undo."""

import base64
import hashlib
import os
import shutil
import subprocess
from pathlib import Path

import pytest

FIXES = Path(__file__).resolve().parents[3] / "fixes"
SHELLS = [s for s in ("dash", "busybox") if shutil.which(s)]
ADDR = "0000:06:00.0"


def sh(shell, script, *args, root=None, bin_dir=None):
    cmd = [shell, "sh"] if shell == "busybox" else [shell]
    env = {**os.environ, "PATH": (f"{bin_dir}:" if bin_dir else "") + "/usr/sbin:/usr/bin:/sbin:/bin"}
    if root:
        env["IOMMU_AUDIT_ROOT"] = str(root)
    return subprocess.run([*cmd, str(FIXES / script), *args], capture_output=True, text=True, env=env, timeout=60)


def sha(text: str) -> str:
    return hashlib.sha256(text.rstrip("\n").encode()).hexdigest()


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


@pytest.mark.parametrize("shell", SHELLS)
@pytest.mark.parametrize("script", sorted(p.name for p in FIXES.glob("*.sh") if p.name != "lib.sh"))
def test_every_script_has_usage_and_rejects_bad_input(shell, script, tmp_path):
    r = sh(shell, script, "--help")
    assert r.returncode == 0 and r.stdout.startswith("usage: ")
    r = sh(shell, script, "--step-dir", str(tmp_path / "s"), "--no-such-option", "x", root=tmp_path)
    assert r.returncode == 2


@pytest.mark.parametrize("shell", SHELLS)
@pytest.mark.parametrize("bad", ["0000:06:00.0;reboot", "06:00.0", "$(id)", "0000:06:00.0 0000:07:00.0"])
def test_addresses_are_checked_before_anything_runs(shell, bad, tmp_path):
    for script in ("bound-to-vfio.sh", "vfio-binding-persistent.sh", "host-device-kept.sh"):
        r = sh(shell, script, "--step-dir", str(tmp_path / script), bad, root=tmp_path)
        assert r.returncode == 2 and "is not a PCI address" in r.stderr, (script, r.stdout, r.stderr)


@pytest.mark.parametrize("shell", SHELLS)
def test_persistence_without_driverctl_writes_the_override_and_rule_and_undoes_them(shell, tmp_path):
    root, step = tmp_path / "root", tmp_path / "step"
    (root / "etc/driverctl.d").mkdir(parents=True)
    dry = sh(shell, "vfio-binding-persistent.sh", "--dry-run", ADDR, root=root)
    assert dry.returncode == 0 and list((root / "etc/driverctl.d").iterdir()) == []
    r = sh(shell, "vfio-binding-persistent.sh", "--step-dir", str(step), ADDR, root=root)
    assert r.returncode == 0, r.stderr
    assert (root / f"etc/driverctl.d/pci-{ADDR}").read_text() == "vfio-pci\n"
    rule = (root / "etc/udev/rules.d/89-iommu-audit-vfio.rules").read_text()
    assert 'TEST=="/etc/driverctl.d/pci-$kernel"' in rule and "drivers_probe" in rule and "ids" not in rule
    assert (step / "status").read_text().strip() == "done"
    again = sh(shell, "vfio-binding-persistent.sh", "--step-dir", str(tmp_path / "again"), ADDR, root=root)
    assert again.returncode == 0 and "write" not in again.stdout
    u = sh(shell, "vfio-binding-persistent.sh", "--undo", "--step-dir", str(step), root=root)
    assert u.returncode == 0, u.stderr
    assert not (root / f"etc/driverctl.d/pci-{ADDR}").exists()
    assert not (root / "etc/udev/rules.d/89-iommu-audit-vfio.rules").exists()


@pytest.mark.parametrize("shell", SHELLS)
def test_driverctl_with_its_rule_masked_gets_our_rule_as_the_audit_asks(shell, host, dl360, tmp_path):
    """driverctl installed, its udev rule masked: the override file alone binds nothing at boot. The old
    script said 'nothing to do: driverctl override exists'; the plan and the script now agree with the audit."""
    from iommu_audit.fix.plan import REFUSED, plan_host
    from iommu_audit.rules.devices import vfio_binding_persistent
    host.replace("etc/libvirt/qemu/z-ceph-1.xml", "managed='yes'", "managed='no'")  # else libvirt binds it
    host.path("etc/udev/rules.d").mkdir(parents=True)
    host.path("etc/udev/rules.d/05-driverctl.rules").symlink_to("/dev/null")
    nvme1, mask = dl360.device_named("ceph-nvme-1"), "/etc/udev/rules.d/05-driverctl.rules masks it (a link to /dev/null)"
    assert host.read(f"etc/driverctl.d/pci-{ADDR}") == "vfio-pci\n"
    v = vfio_binding_persistent(host.facts(), nvme1)
    assert not v.ok and mask in v.found
    [step] = [s for s in plan_host(host.facts(), dl360).changes if s.requirement == "vfio-binding-persistent"]
    assert f"with our udev rule, because driverctl: {mask} (left as it is)" in step.summary and step.args == [ADDR]
    bin_dir, calls, step_dir = tmp_path / "bin", tmp_path / "driverctl.calls", tmp_path / "step"
    bin_dir.mkdir()
    (bin_dir / "driverctl").write_text(f'#!/bin/sh\necho "$*" >> {calls}\n')
    (bin_dir / "driverctl").chmod(0o755)
    r = sh(shell, "vfio-binding-persistent.sh", "--step-dir", str(step_dir), *step.args, root=host.root, bin_dir=bin_dir)
    assert r.returncode == 0, r.stderr
    assert f"driverctl applies nothing at boot: {mask}: /etc/driverctl.d/pci-{ADDR}, applied at boot by " \
        "/etc/udev/rules.d/89-iommu-audit-vfio.rules" in r.stdout and not calls.exists()
    v = vfio_binding_persistent(host.facts(), nvme1)
    assert v.ok and "(applied at boot by /etc/udev/rules.d/89-iommu-audit-vfio.rules)" in v.found
    assert os.readlink(host.path("etc/udev/rules.d/05-driverctl.rules")) == "/dev/null"  # the admin's mask stays
    assert sh(shell, "vfio-binding-persistent.sh", "--undo", "--step-dir", str(step_dir), root=host.root).returncode == 0
    # Our rule masked as well: nothing would apply the file at boot; the plan and the script refuse, naming both.
    host.path("etc/udev/rules.d/89-iommu-audit-vfio.rules").symlink_to("/dev/null")
    [step] = [s for s in plan_host(host.facts(), dl360).steps if s.requirement == "vfio-binding-persistent"]
    assert step.kind == REFUSED and mask in step.summary and \
        "/etc/udev/rules.d/89-iommu-audit-vfio.rules masks it (a link to /dev/null)" in step.summary
    r = sh(shell, "vfio-binding-persistent.sh", "--step-dir", str(tmp_path / "again"), ADDR, root=host.root, bin_dir=bin_dir)
    assert r.returncode == 3 and mask in r.stderr and "89-iommu-audit-vfio.rules masks it (a link to /dev/null)" in r.stderr
    assert os.readlink(host.path("etc/udev/rules.d/89-iommu-audit-vfio.rules")) == "/dev/null" and not calls.exists()


@pytest.mark.parametrize("shell", SHELLS)
def test_file_changed_since_the_plan_is_refused_and_undo_restores_bytes(shell, tmp_path):
    root, step = tmp_path / "root", tmp_path / "step"
    conf = root / "etc/modprobe.d/vfio.conf"
    conf.parent.mkdir(parents=True)
    old = "# passthrough\noptions vfio-pci ids=144d:a808 disable_vga=1\n\n"
    conf.write_text(old)
    conf.chmod(0o640)
    new = "# passthrough\noptions vfio-pci disable_vga=1\n"
    args = ["--file", "/etc/modprobe.d/vfio.conf", "--sha256", sha("something else"), "--content", b64(new)]
    r = sh(shell, "vfio-ids-scope.sh", "--step-dir", str(step), *args, root=root)
    assert r.returncode == 3 and "changed since the plan" in r.stderr and conf.read_text() == old
    args[3] = sha(old)  # what the probe saw: the text without its trailing newlines
    r = sh(shell, "vfio-ids-scope.sh", "--step-dir", str(step), *args, root=root)
    assert r.returncode == 0, r.stderr
    assert conf.read_text() == new and oct(conf.stat().st_mode & 0o777) == "0o640"
    assert (step / "backup/etc/modprobe.d/vfio.conf").read_text() == old
    assert not list(conf.parent.glob("*.iommu-audit.*"))  # no temp file left behind
    assert sh(shell, "vfio-ids-scope.sh", "--undo", "--step-dir", str(step), root=root).returncode == 0
    assert conf.read_text() == old


def test_boot_config_writes_only_boot_files(tmp_path):
    args = ["--boot", "grub", "--file", "/etc/passwd", "--sha256", "absent", "--content", b64("x")]
    r = sh("dash", "cmdline-persistent.sh", "--step-dir", str(tmp_path / "s"), *args, root=tmp_path)
    assert r.returncode == 2 and "will not write /etc/passwd" in r.stderr
    assert not (tmp_path / "etc/passwd").exists()


def test_packed_command_through_testinfra_passes_every_argument():
    """What --fix sends: lib.sh + script, gzip+base64, one sh -c; $0 and each argument arrive intact."""
    import testinfra

    from iommu_audit.fix import apply
    host = apply.Host(testinfra.get_host("local://"))
    r = host.run("bound-to-vfio", "--dry-run", "0000:06:00.0; touch /tmp/iommu-audit-injected")
    assert r.rc == 2 and "is not a PCI address" in r.stderr and not Path("/tmp/iommu-audit-injected").exists()
    r = host.run("vfio-modules", "--dry-run")
    assert r.rc == 0 and "would write /etc/modules-load.d/vfio-pci.conf" in r.stdout
    assert len(apply.command("cmdline-persistent")) < 6000  # dropbear refuses commands over 9000 bytes


def test_bind_refuses_at_apply_time_a_device_whose_disk_is_mounted():
    """The plan's guard again, on the host, just before the rebind (dry run on this machine: reads only)."""
    from iommu_audit.pci import addresses_in
    mounted = {}
    for line in Path("/proc/mounts").read_text().splitlines():
        src, dst = line.split()[:2]
        if src.startswith("/dev/") and Path(src).exists():
            mounted.setdefault(Path(src).resolve().name, dst)
    for name, dst in mounted.items():
        block = Path("/sys/class/block") / name
        found = addresses_in(str(block.resolve())) if block.exists() else []
        if found:
            r = sh("dash", "bound-to-vfio.sh", "--dry-run", found[-1])
            assert r.returncode == 3 and f"/dev/{name} is mounted on {dst}" in r.stderr, r.stderr
            return
    pytest.skip("no mounted disk on a PCI device here")


def lib_call(shell, root, *call):
    """One fixes/lib.sh function, as apply.Host.lib sends it (files under root)."""
    cmd = [shell, "sh"] if shell == "busybox" else [shell]
    program = (FIXES / "lib.sh").read_text() + '\n"$@"\n'
    env = {**os.environ, "PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "IOMMU_AUDIT_ROOT": str(root)}
    return subprocess.run([*cmd, "-c", program, "lib", *call], capture_output=True, text=True, env=env, timeout=60)


BOOT = Path("/proc/sys/kernel/random/boot_id").read_text().strip()


@pytest.mark.parametrize("shell", SHELLS)
def test_run_lock_refuses_a_second_run_and_takes_over_a_dead_one(shell, tmp_path):
    lock = tmp_path / "run/iommu-audit.lock"
    holder = subprocess.Popen(["sleep", "60"])
    try:
        assert lib_call(shell, tmp_path, "lock_take", "RUN-A", BOOT, str(holder.pid), "ctl").returncode == 0
        assert os.readlink(lock).split()[0] == "RUN-A"
        r = lib_call(shell, tmp_path, "lock_take", "RUN-B", BOOT, str(os.getpid()), "ctl")
        assert r.returncode == 3 and os.readlink(lock).split()[0] == "RUN-A"
        line = r.stderr.strip()
        assert len(line.splitlines()) == 1 and "refused: run RUN-A holds" in line and " since 20" in line
        assert f"pid {holder.pid}" in line and f"rm {lock}" in line
        assert lib_call(shell, tmp_path, "lock_release", "RUN-B").returncode == 0 and lock.is_symlink()
    finally:
        holder.kill()
        holder.wait()
    # Its process is gone (same boot): the next run takes the lock over and says so.
    r = lib_call(shell, tmp_path, "lock_take", "RUN-B", BOOT, str(os.getpid()), "ctl")
    assert r.returncode == 0 and f"is stale (process {holder.pid} is gone)" in r.stdout
    assert os.readlink(lock).split()[0] == "RUN-B"
    lib_call(shell, tmp_path, "lock_release", "RUN-B")
    assert not lock.is_symlink()
    # A lock from an earlier boot of the host (a /run that is not a tmpfs) does not block either.
    os.symlink(f"RUN-C 2026-11-30T01:00:00Z 0000-old-boot other-boot 1 ctl", lock)
    r = lib_call(shell, tmp_path, "lock_take", "RUN-D", BOOT, "1", "ctl")
    assert r.returncode == 0 and "the host rebooted since 2026-11-30T01:00:00Z" in r.stdout


@pytest.mark.parametrize("shell", SHELLS)
def test_a_script_run_by_hand_waits_for_no_one_but_refuses_while_a_run_holds_the_lock(shell, tmp_path):
    root, conf = tmp_path / "root", tmp_path / "root/etc/modules-load.d/vfio-pci.conf"
    holder = subprocess.Popen(["sleep", "60"])
    try:
        assert lib_call(shell, root, "lock_take", "20261201T021900Z-1a2b", BOOT, str(holder.pid), "ctl").returncode == 0
        step = root / "var/log/iommu-audit/by-hand/01-vfio-binding-persistent"
        r = sh(shell, "vfio-binding-persistent.sh", "--step-dir", str(step), ADDR, root=root)
        assert r.returncode == 3 and "refused: run 20261201T021900Z-1a2b holds" in r.stderr
        assert not (root / f"etc/driverctl.d/pci-{ADDR}").exists() and not (step / "status").exists()
        # A step of the holding run itself goes ahead.
        step = root / "var/log/iommu-audit/20261201T021900Z-1a2b/01-vfio-binding-persistent"
        r = sh(shell, "vfio-binding-persistent.sh", "--step-dir", str(step), ADDR, root=root)
        assert r.returncode == 0 and (root / f"etc/driverctl.d/pci-{ADDR}").read_text() == "vfio-pci\n", r.stderr
    finally:
        holder.kill()
        holder.wait()
    assert not conf.exists()
    # By hand with no run in progress: the script holds the lock while it runs, then lets it go.
    r = sh(shell, "vfio-binding-persistent.sh", "--step-dir", str(tmp_path / "s2"), "0000:07:00.0", root=root)
    assert r.returncode == 0 and "lock " in r.stdout and not (root / "run/iommu-audit.lock").is_symlink()


def test_fix_takes_the_lock_over_from_a_dead_run_of_this_controller_only(tmp_path, monkeypatch):
    """apply.lock through testinfra: the host cannot see the controller's processes, the controller can."""
    import testinfra

    from iommu_audit.fix import apply
    monkeypatch.setenv("IOMMU_AUDIT_ROOT", str(tmp_path))
    monkeypatch.setattr(apply, "_boot_id", lambda: "controller-boot")  # another machine than the host
    host, lock = apply.Host(testinfra.get_host("local://")), tmp_path / "run/iommu-audit.lock"
    dead = subprocess.Popen(["true"])
    dead.wait()
    lock.parent.mkdir()
    os.symlink(f"20261201T010000Z-dead 2026-12-01T01:00:00Z {BOOT} controller-boot {dead.pid} ctl", lock)
    apply.lock(host, "20261201T020000Z-beef")
    assert os.readlink(lock).split()[:1] + os.readlink(lock).split()[3:5] == [
        "20261201T020000Z-beef", "controller-boot", str(os.getpid())]
    # A live run (this process) refuses the next one: one line, run id, since, what to do.
    with pytest.raises(apply.FixError) as exc:
        apply.lock(host, "20261201T030000Z-cafe")
    msg = str(exc.value)
    assert msg.startswith("run 20261201T020000Z-beef holds ") and "\n" not in msg
    assert f"rm {lock} and try again" in msg and "holder:" not in msg
    apply.unlock(host, "20261201T030000Z-cafe")  # not the holder: no effect
    assert lock.is_symlink()
    apply.unlock(host, "20261201T020000Z-beef")
    assert not lock.is_symlink()


@pytest.mark.parametrize("shell", SHELLS)
def test_initramfs_rebuild_runs_the_planned_tools_and_again_on_undo(shell, tmp_path):
    bin_dir, calls = tmp_path / "bin", tmp_path / "calls"
    bin_dir.mkdir()
    for tool in ("update-initramfs", "proxmox-boot-tool"):
        (bin_dir / tool).write_text(f'#!/bin/sh\necho "{tool} $*" >> {calls}\n')
        (bin_dir / tool).chmod(0o755)
    cmd = [shell, "sh"] if shell == "busybox" else [shell]
    env = {**os.environ, "PATH": f"{bin_dir}:/usr/sbin:/usr/bin:/sbin:/bin", "IOMMU_AUDIT_ROOT": str(tmp_path / "root")}

    def run(*args):
        return subprocess.run([*cmd, str(FIXES / "initramfs.sh"), *args], capture_output=True, text=True, env=env)
    step = tmp_path / "step"
    assert run("--step-dir", str(step), "update-initramfs; reboot").returncode == 2 and not calls.exists()
    assert run("--step-dir", str(tmp_path / "s1"), "dracut").returncode == 1  # planned, not installed (not on PATH here)
    r = run("--step-dir", str(step), "update-initramfs", "proxmox-boot-tool")
    assert r.returncode == 0, r.stderr
    assert calls.read_text() == "update-initramfs -u -k all\nproxmox-boot-tool refresh\n"
    assert run("--undo", "--step-dir", str(step)).returncode == 0
    assert calls.read_text().splitlines()[2:] == ["update-initramfs -u -k all", "proxmox-boot-tool refresh"]


def test_undo_puts_files_back_before_the_initramfs_is_rebuilt():
    from iommu_audit.fix.apply import undo_order
    steps = ["01-vfio-modules", "02-vfio-ids-scope", "03-initramfs", "04-bound-to-vfio"]
    assert undo_order(steps, lambda s: s.split("-", 1)[1]) == [
        "04-bound-to-vfio", "02-vfio-ids-scope", "01-vfio-modules", "03-initramfs"]


def test_a_long_plan_reaches_the_host_in_pieces_below_dropbears_limit(tmp_path, monkeypatch):
    import json

    from iommu_audit.fix import apply
    from iommu_audit.fix.plan import HostPlan, Step
    sent = []

    class Recorder:
        def run(self, command, *args):
            sent.append(command % tuple(__import__("shlex").quote(a) for a in args))
            r = subprocess.run(["sh", "-c", sent[-1]], capture_output=True, text=True)
            return type("Result", (), {"rc": r.returncode, "stdout": r.stdout, "stderr": r.stderr})
    monkeypatch.setattr(apply, "LOG_ROOT", str(tmp_path))
    steps = [Step("assigned-to-vm", f"dev-{i}", __import__("secrets").token_hex(200), "manual") for i in range(40)]
    assert apply.apply_plan(apply.Host(Recorder()), HostPlan("node1", steps, {}), "20261201T000000Z-abcd",
                            lambda line: None) == "applied"
    assert len(sent) > 1 and max(len(c) for c in sent) < 8000
    doc = json.loads((tmp_path / "20261201T000000Z-abcd/plan.json").read_text())
    assert [s["summary"] for s in doc["steps"]] == [s.summary for s in steps]
