"""False greens a real kernel and a real SSH session can show (issue 7), on one guest booted once.

The guest has one NVMe subsystem with two controllers sharing namespace 1: Debian's 6.1 kernel
(CONFIG_NVME_MULTIPATH=y) makes one multipath head under /sys/devices/virtual/nvme-subsystem,
the layout many distributions use by default. Then a tool that hangs on the host, over real SSH.
"""

import time

import pytest

from tests.e2e.audit_run import QEMU_NVME_ID, audit, ssh_args, write_profile

NAME = "e2e-falsegreens"


@pytest.fixture(scope="module")
def guest(boot_guest):
    return boot_guest(NAME, iommu="intel", cmdline_extra="intel_iommu=on no_timer_check", nvme=0, multipath_nvme=True)


def controllers_profile(tmp_path, g):
    devices = [{"name": f"mpath-ctrl-{i + 1}", "address": a, "id": QEMU_NVME_ID, "vm": "z-mpath"}
               for i, a in enumerate(g.multipath_addresses)]
    return write_profile(tmp_path / "mpath.yaml", devices=devices, require=["intel_iommu=on"])


def test_a_mounted_multipath_namespace_fails_both_controllers(guest, tmp_path):
    heads = guest.run("for b in /sys/block/nvme*; do echo ${b##*/} $(readlink $b); done", check=True)[1].split("\n")
    head = [ln.split()[0] for ln in heads if "/nvme-subsystem/" in ln]
    assert len(head) == 1, f"no multipath head: {heads}"
    dev = f"/dev/{head[0]}"
    guest.run(f"mkdir -p /srv/mpath && mount -t ext4 {dev} /srv/mpath", check=True)
    try:
        run = audit(tmp_path, controllers_profile(tmp_path, guest), *ssh_args(guest), "-k", "device_not_used_by_host")
    finally:
        guest.run("umount /srv/mpath")
    assert run.rc == 1, run.output
    ids = {f"test_device_not_used_by_host[{NAME}-mpath-ctrl-{i}]" for i in (1, 2)}
    assert run.failed() == ids, run.output
    for t in ids:
        assert f"{dev} is mounted on /srv/mpath" in run.messages[t], run.messages[t]


def hang(guest, tool: str) -> str:
    """Put a shim that sleeps in place of `tool` on the guest; returns the real path (moved to PATH.real)."""
    path = guest.run(f"command -v {tool}", check=True)[1].strip()
    guest.run(f"mv {path} {path}.real && printf '#!/bin/sh\\necho $$ >> /tmp/hung.pids\\nexec sleep 600\\n' > {path} "
              f"&& chmod 755 {path}", check=True)
    return path


def restore(guest, path: str) -> None:
    guest.run(f"[ -e {path}.real ] && mv -f {path}.real {path}")


@pytest.mark.parametrize("has_timeout", [True, False], ids=["timeout-on-host", "no-timeout-on-host"])
def test_a_hanging_dmesg_fails_facts_gathered_promptly(guest, tmp_path, has_timeout):
    # With `timeout` the host ends the probe itself; without it the client gives up after
    # --probe-timeout plus its grace. Either way: a failed facts-gathered naming the host.
    dmesg = hang(guest, "dmesg")
    hidden = None
    try:
        if not has_timeout:
            hidden = guest.run("command -v timeout", check=True)[1].strip()
            guest.run(f"mv {hidden} {hidden}.real", check=True)
        t0 = time.monotonic()
        run = audit(tmp_path, controllers_profile(tmp_path, guest), *ssh_args(guest), "--probe-timeout=10")
        took = time.monotonic() - t0
    finally:
        guest.run("[ -f /tmp/hung.pids ] && kill $(cat /tmp/hung.pids); rm -f /tmp/hung.pids")
        restore(guest, dmesg)
        if hidden:
            restore(guest, hidden)
    assert run.rc == 1, run.output
    msg = run.messages[f"test_facts_gathered[{NAME}]"]
    assert f"ssh://{NAME}: the probe did not finish within 10 s (--probe-timeout)" in msg, msg
    assert not [t for t, o in run.outcomes.items() if o == "passed"], run.output  # nothing else judged
    assert took < 10 + 15 + 60, took  # probe timeout + transport grace + pytest start-up on a loaded TCG host


def test_hidepid_leaves_the_libvirt_daemon_state_unknown(guest, tmp_path):
    # /proc mounted hidepid=2 and a non-root audit: libvirtd (if any) is invisible. The audit must say it
    # cannot tell, not read the definition files as if no daemon ran, nor start one through virsh.
    guest.run("grep -q '^aud:' /etc/passwd || { echo 'aud:x:1000:1000::/home/aud:/bin/sh' >> /etc/passwd; "
              "echo 'aud:*:19000:0:99999:7:::' >> /etc/shadow; echo 'aud:x:1000:' >> /etc/group; }; "
              "mkdir -p /home/aud/.ssh && cp /root/.ssh/authorized_keys /home/aud/.ssh/ && "
              "chown -R 1000:1000 /home/aud && chmod 700 /home/aud/.ssh", check=True)
    guest.run("printf '#!/bin/sh\\necho virsh was called >&2; exit 1\\n' > /usr/bin/virsh && chmod 755 /usr/bin/virsh "
              "&& mount -o remount,hidepid=2 /proc", check=True)
    try:
        run = audit(tmp_path, controllers_profile(tmp_path, guest), f"--hosts=ssh://aud@{NAME}",
                    f"--ssh-config={guest.ssh_config_path}", "-k", "assigned_to_vm or facts_gathered")
    finally:
        guest.run("mount -o remount,hidepid=0 /proc; rm -f /usr/bin/virsh")
    assert run.rc == 1, run.output
    failed = [t for t in run.failed() if t.startswith("test_assigned_to_vm[")]
    assert len(failed) == 2, run.output
    msg = run.messages[failed[0]]
    assert "cannot tell whether a libvirt daemon runs: /proc hides other users' processes (hidepid)" in msg, msg
    assert "virsh was called" not in run.output
