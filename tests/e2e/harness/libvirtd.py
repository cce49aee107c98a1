"""A real, private libvirtd (QEMU driver, qemu:///system) for e2e tests.

libvirtd runs as root inside its own mount namespace (``unshare -m
--propagation private``). There, /etc and /var are overlay mounts whose upper
layers live in a temp dir, and /run is a fresh tmpfs: libvirtd reads our
libvirtd.conf/qemu.conf and writes its state without touching the machine's
real /etc, /var or /run, and everything disappears with the namespace. No
systemd, no virtlogd/virtlockd: we only define domains and edit their
inactive config (stdio_handler="file" and the default "nop" lock manager
would keep a started domain independent of both too).

Clients outside the namespace reach it through a socket in the temp dir:
``qemu:///system?socket=<tmp>/sock/libvirt-sock`` (set LIBVIRT_DEFAULT_URI).
"""
from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Iterator

from .qemu import die_with_parent

LIBVIRTD_CONF = """\
unix_sock_dir = "{sock}"
unix_sock_rw_perms = "0700"
auth_unix_ro = "none"
auth_unix_rw = "none"
log_outputs = "3:file:{log}"
"""
QEMU_CONF = """\
user = "root"
group = "root"
swtpm_user = "root"
swtpm_group = "root"
dynamic_ownership = 0
remember_owner = 0
security_driver = "none"
cgroup_controllers = [ ]
namespaces = [ ]
stdio_handler = "file"
"""
# Runs inside the new mount namespace; paths arrive as "$1" (no interpolation).
NAMESPACE_SETUP = r"""
set -e
t="$1"
for d in etc var; do
    mkdir -p "$t/$d-upper" "$t/$d-work"
    mount -t overlay "libvirt-$d" -o "lowerdir=/$d,upperdir=$t/$d-upper,workdir=$t/$d-work" "/$d"
done
mount -t tmpfs libvirt-run /run
mkdir -p /etc/libvirt /var/lib/libvirt /var/cache/libvirt /var/log/libvirt /run/libvirt
cp "$t/qemu.conf" /etc/libvirt/qemu.conf
# The QEMU driver resolves its compiled-in user before reading qemu.conf
# (user = "root" applies after); only this overlay's /etc/passwd gets it.
getent group libvirt-qemu >/dev/null || echo 'libvirt-qemu:x:64055:' >> /etc/group
getent passwd libvirt-qemu >/dev/null ||
    echo 'libvirt-qemu:x:64055:64055::/var/lib/libvirt:/usr/sbin/nologin' >> /etc/passwd
exec libvirtd -f "$t/libvirtd.conf"
"""


class Libvirtd:
    def __init__(self, tmp: Path, proc: subprocess.Popen):
        self.tmp, self.proc = tmp, proc
        self.socket = tmp / "sock" / "libvirt-sock"
        self.uri = f"qemu:///system?socket={self.socket}"
        self.log = tmp / "libvirtd.log"

    def virsh(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        res = subprocess.run(["virsh", "-c", self.uri, *args], capture_output=True, text=True,
                             timeout=120, stdin=subprocess.DEVNULL)
        if check and res.returncode != 0:
            raise RuntimeError(f"virsh {' '.join(args)} -> rc {res.returncode}\n"
                               f"{res.stdout}{res.stderr}")
        return res

    # -- domain helpers ----------------------------------------------------
    def define_domain(self, name: str, *, domain_type: str | None = None,
                      memory_mib: int = 512) -> None:
        """Define a fresh inactive minimal q35 domain (never started), replacing one of that name.

        The daemon is shared by the whole session: a domain an earlier test left (with its
        own UUID) must not make this define fail. domain_type defaults to "kvm" and falls
        back to "qemu" when this libvirt reports no KVM support.
        """
        self.virsh("undefine", name, check=False)
        for dtype in ([domain_type] if domain_type else ["kvm", "qemu"]):
            xml = domain_xml(name, dtype, memory_mib)
            res = self._virsh_stdin(["define", "/dev/stdin"], xml)
            if res.returncode == 0:
                return
        raise RuntimeError(f"define {name} failed:\n{res.stdout}{res.stderr}")

    def attach_hostdev(self, domain: str, pci_address: str) -> None:
        """Persistently (--config) add a managed PCI hostdev, e.g. '0000:00:10.0'."""
        self._attach(domain, hostdev_xml(pci_address))

    def detach_hostdev(self, domain: str, pci_address: str) -> None:
        self._detach(domain, hostdev_xml(pci_address))

    def attach_disk(self, domain: str, source: str, target: str = "vdb") -> None:
        """Persistently add a <disk type='block'> backed by e.g. /dev/disk/by-id/...."""
        self._attach(domain, disk_xml(source, target))

    def detach_disk(self, domain: str, source: str, target: str = "vdb") -> None:
        self._detach(domain, disk_xml(source, target))

    def dumpxml(self, domain: str) -> str:
        return self.virsh("dumpxml", "--inactive", domain).stdout

    def undefine(self, domain: str) -> None:
        self.virsh("undefine", domain, "--nvram", check=False)

    def _attach(self, domain: str, xml: str) -> None:
        self._check(self._virsh_stdin(["attach-device", domain, "/dev/stdin", "--config"], xml))

    def _detach(self, domain: str, xml: str) -> None:
        self._check(self._virsh_stdin(["detach-device", domain, "/dev/stdin", "--config"], xml))

    def _virsh_stdin(self, args: list[str], xml: str) -> subprocess.CompletedProcess:
        return subprocess.run(["virsh", "-c", self.uri, *args], input=xml, capture_output=True,
                              text=True, timeout=120)

    @staticmethod
    def _check(res: subprocess.CompletedProcess) -> None:
        if res.returncode != 0:
            raise RuntimeError(f"{' '.join(res.args)} -> rc {res.returncode}\n"
                               f"{res.stdout}{res.stderr}")


def domain_xml(name: str, domain_type: str = "kvm", memory_mib: int = 512) -> str:
    return f"""<domain type='{domain_type}'>
  <name>{name}</name>
  <memory unit='MiB'>{memory_mib}</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64' machine='q35'>hvm</type></os>
  <features><acpi/></features>
  <devices><emulator>/usr/bin/qemu-system-x86_64</emulator></devices>
</domain>
"""


def hostdev_xml(pci_address: str) -> str:
    dom, bus, rest = pci_address.split(":")
    slot, func = rest.split(".")
    return (f"<hostdev mode='subsystem' type='pci' managed='yes'><source>"
            f"<address domain='0x{dom}' bus='0x{bus}' slot='0x{slot}' function='0x{func}'/>"
            f"</source></hostdev>\n")


def disk_xml(source: str, target: str = "vdb") -> str:
    return (f"<disk type='block' device='disk'><driver name='qemu' type='raw'/>"
            f"<source dev='{source}'/><target dev='{target}' bus='virtio'/></disk>\n")


def unavailable_reason() -> str | None:
    for tool, pkg in (("libvirtd", "libvirt-daemon-driver-qemu"), ("virsh", "libvirt-clients"),
                      ("unshare", "util-linux"), ("qemu-system-x86_64", "qemu-system-x86")):
        if not shutil.which(tool, path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin"):
            return f"private libvirtd needs {tool} (apt: {pkg}); run tests/e2e/harness/install.sh"
    if os.geteuid() != 0:
        return "private libvirtd needs root (mount namespace, qemu:///system)"
    return None


@contextlib.contextmanager
def private_libvirtd(timeout: float = 60) -> Iterator[Libvirtd]:
    """Start a private libvirtd; yields a Libvirtd with ``.uri``. Stops it and wipes state on exit."""
    reason = unavailable_reason()
    if reason:
        raise RuntimeError(reason)
    tmp = Path(tempfile.mkdtemp(prefix="iommu-audit-libvirtd-"))
    (tmp / "sock").mkdir(mode=0o700)
    (tmp / "libvirtd.conf").write_text(LIBVIRTD_CONF.format(sock=tmp / "sock", log=tmp / "libvirtd.log"))
    (tmp / "qemu.conf").write_text(QEMU_CONF)
    env = dict(os.environ, PATH=os.environ.get("PATH", "") + ":/usr/sbin:/sbin")
    env.pop("LIBVIRT_DEFAULT_URI", None)
    with open(tmp / "stdout.log", "wb") as out:
        proc = subprocess.Popen(
            ["unshare", "-m", "--propagation", "private", "--", "sh", "-c", NAMESPACE_SETUP,
             "sh", str(tmp)], stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            env=env, preexec_fn=die_with_parent)  # unshare, then sh, exec libvirtd: one process
    d = Libvirtd(tmp, proc)
    try:
        _wait_ready(d, timeout)
        yield d
    finally:
        _stop(proc)
        shutil.rmtree(tmp, ignore_errors=True)


def _wait_ready(d: Libvirtd, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if d.proc.poll() is not None:
            break
        if d.socket.exists() and d.virsh("uri", check=False).returncode == 0:
            return
        time.sleep(0.2)
    logs = "".join(p.read_text(errors="replace")[-4000:] for p in
                   (d.tmp / "stdout.log", d.log) if p.exists())
    raise RuntimeError(f"private libvirtd did not come up (rc {d.proc.poll()}):\n{logs}")


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()  # libvirtd shuts down cleanly on SIGTERM
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
            proc.wait()
    # Anything libvirtd spawned (capability-probe QEMUs) shares its session.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, 9)
