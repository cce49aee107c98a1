"""Boot a throw-away q35 guest (real Linux kernel) to play the "KVM host" under audit.

Topology knobs map to what the audit looks at: an emulated IOMMU (Intel VT-d or
AMD-Vi) or none, the kernel command line, N NVMe controllers at fixed PCI
addresses, optionally NVMe behind a PCIe-to-PCI bridge (one shared IOMMU
group), optionally one NVMe pre-formatted as ext4 for "a disk the host uses".

Networking is QEMU user mode with restrict=on: the guest reaches nothing, the
host reaches the guest's sshd only through a 127.0.0.1 hostfwd port.
"""
from __future__ import annotations

import ctypes
import os
import shlex
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from . import guest_image
from .guest_image import GuestImage

# Fixed addresses on the q35 root bus (pcie.0), so BDFs are predictable:
#   00:02.0 e1000e NIC (amd-iommu's PCI function takes the first free slot, see README),
#   00:10.0 .. 00:17.0 NVMe "CEPHNVME0001".., serial N at slot 0x10+N-1,
#   00:18.0 pcie-pci-bridge; behind it (bus 01) NVMe "CEPHNVMEB001".. at 01:01.0, 01:02.0 ..
NIC_ADDR = "0000:00:02.0"
NVME_SLOT0 = 0x10
BRIDGE_SLOT = 0x18
PERSIST_SLOT = 0x19  # opt-in virtio-blk persistent disk (qemu.Guest(persistent_disk=True))
MPATH_SLOT0 = 0x1a  # opt-in NVMe multipath (qemu.Guest(multipath_nvme=True)): 00:1a.0 and 00:1b.0
MPATH_SERIAL = "MPATHNVME001"  # QEMU: every controller of a subsystem carries the subsystem's serial
MAX_NVME = 8
NVME_SERIAL = "CEPHNVME{:04d}"
BRIDGE_NVME_SERIAL = "CEPHNVMEB{:03d}"
NVME_MODEL = "QEMU NVMe Ctrl"  # QEMU's default model string -> by-id nvme-QEMU_NVMe_Ctrl_<serial>
DISK_BYTES = 64 * 1024 * 1024

_KVM_OK: bool | None = None
_KVM_WHY = ""
_ACCEL_USED: tuple[str, str] | None = None  # (mode, why) of the last accel(), for accel_line()


class GuestBootError(RuntimeError):
    pass


def nvme_address(index: int) -> str:
    """BDF of the index-th (0-based) NVMe on the root bus."""
    return f"0000:00:{NVME_SLOT0 + index:02x}.0"


def by_id_path(serial: str) -> str:
    """The /dev/disk/by-id path the guest /init creates for an NVMe namespace."""
    return f"/dev/disk/by-id/nvme-{NVME_MODEL.replace(' ', '_')}_{serial}"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def die_with_parent() -> None:
    """preexec_fn: if pytest is killed, the kernel kills this child too (no stray guests or
    libvirtd); it also gets its own session."""
    PR_SET_PDEATHSIG = 1
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    os.setsid()


def accel(image: GuestImage) -> str:
    """'kvm' when /dev/kvm really runs this kernel, else 'tcg'. IOMMU_AUDIT_ACCEL overrides.

    /dev/kvm opening is not enough (nested setups may fail at the first vCPU
    run), so the probe boots the guest kernel with rdinit=/nonexistent and waits
    for its panic message, which proves vCPUs executed the kernel.
    """
    global _KVM_OK, _KVM_WHY, _ACCEL_USED
    forced = os.environ.get("IOMMU_AUDIT_ACCEL")
    if forced in ("kvm", "tcg"):
        _ACCEL_USED = (forced, f"IOMMU_AUDIT_ACCEL={forced}")
        return forced
    if _KVM_OK is None:
        _KVM_OK, _KVM_WHY = _probe_kvm_once_per_boot(image)
    _ACCEL_USED = ("kvm" if _KVM_OK else "tcg", _KVM_WHY)
    return _ACCEL_USED[0]


def accel_line() -> str:
    """One line for the test run: which accelerator the guests used and why; '' if none booted."""
    if _ACCEL_USED is None:
        return ""
    mode, why = _ACCEL_USED
    return f"e2e guests ran under {'KVM' if mode == 'kvm' else 'TCG (software emulation: slow)'}: {why}"


def _probe_kvm_once_per_boot(image: GuestImage) -> tuple[bool, str]:
    """_probe_kvm's answer, kept next to the image for this boot of the machine: a probe that
    hangs costs 30 s of a spinning core, and every test process (xdist worker, single-file run) asks."""
    boot_id = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    saved = image.kernel.parent / f"kvm-probe-{boot_id}"
    with guest_image.cache_lock(image.kernel.parent):
        if not saved.exists():
            ok, why = _probe_kvm(image)
            for old in image.kernel.parent.glob("kvm-probe-*"):  # earlier boots
                old.unlink()
            saved.write_text(f"{'yes' if ok else 'no'}\t{why}\n")
    answer, _, why = saved.read_text().strip().partition("\t")
    return answer == "yes", why


def _probe_kvm(image: GuestImage) -> tuple[bool, str]:
    try:
        fd = os.open("/dev/kvm", os.O_RDWR)
        os.close(fd)
    except OSError as exc:
        return False, f"/dev/kvm cannot be opened ({exc.strerror})"
    cmd = ["qemu-system-x86_64", "-machine", "q35", "-accel", "kvm", "-cpu", "host",
           "-m", "256", "-nodefaults", "-display", "none", "-no-reboot", "-serial", "stdio",
           "-kernel", str(image.kernel), "-append", "console=ttyS0 panic=-1 rdinit=/nonexistent"]
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=30,
                             stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        return False, "/dev/kvm opens, but a test boot under KVM did not reach the kernel within 30 s"
    if "Kernel panic" in res.stdout or "VFS: Unable to mount root" in res.stdout:
        return True, "/dev/kvm ran a test boot of the guest kernel"
    last = (res.stderr.strip().splitlines() or [f"exit code {res.returncode}"])[-1]
    return False, f"/dev/kvm opens, but QEMU could not run the guest kernel under KVM ({last})"


class Guest:
    """A running guest. Use as a context manager (or call close())."""

    def __init__(self, image: GuestImage, name: str, *, iommu: str | None = "intel",
                 cmdline_extra: str = "intel_iommu=on", nvme: int = 4, bridge_nvme: int = 0,
                 mounted_nvme: int | None = None, memory_mb: int = 512, cpus: int = 1,
                 accel_mode: str | None = None, ssh_timeout: float | None = None, guestfwd: str | None = None,
                 udev: bool = False, driverctl: bool = False, persistent_disk: bool = False,
                 multipath_nvme: bool = False):
        if iommu not in ("intel", "amd", None):
            raise ValueError(f"iommu must be 'intel', 'amd' or None, not {iommu!r}")
        if not 0 <= nvme <= MAX_NVME or not 0 <= bridge_nvme <= MAX_NVME:
            raise ValueError(f"at most {MAX_NVME} NVMe per bus")
        if mounted_nvme is not None and not 0 <= mounted_nvme < nvme:
            raise ValueError("mounted_nvme is a 0-based index into the root-bus NVMe drives")
        self.image, self.name, self.iommu = image, name, iommu
        self.cmdline_extra, self.memory_mb, self.cpus = cmdline_extra, memory_mb, cpus
        self.guestfwd = guestfwd  # a QEMU guestfwd rule (e.g. virsh_relay.guestfwd(uri)); restrict=on keeps it
        self.accel = accel_mode or accel(image)
        # Opt-in: real udevd (+ Debian's driverctl) in the initramfs, and a disk that keeps
        # /etc/driverctl.d, /etc/udev/rules.d, ... across reboot() (see guest_init.sh).
        self.initrd = (guest_image.with_udev(image, driverctl=driverctl).initrd
                       if udev or driverctl else image.initrd)
        self.persistent_disk = persistent_disk
        self.nvme_serials = [NVME_SERIAL.format(i + 1) for i in range(nvme)]
        self.nvme_addresses = [nvme_address(i) for i in range(nvme)]
        self.bridge_address = f"0000:00:{BRIDGE_SLOT:02x}.0" if bridge_nvme else None
        # Bus number 01 holds when the bridge is the only bridge (true here).
        self.bridge_nvme_serials = [BRIDGE_NVME_SERIAL.format(i + 1) for i in range(bridge_nvme)]
        self.bridge_nvme_addresses = [f"0000:01:{i + 1:02x}.0" for i in range(bridge_nvme)]
        self.mounted_nvme = mounted_nvme
        # Two controllers of one NVM subsystem sharing namespace 1 (ext4 "mpathdata"): the guest
        # kernel makes one multipath head, /sys/devices/virtual/nvme-subsystem/nvme-subsysN/nvmeXn1.
        self.multipath_addresses = [f"0000:00:{MPATH_SLOT0 + i:02x}.0" for i in range(2)] if multipath_nvme else []
        self.nic_address = NIC_ADDR
        self.ssh_timeout = ssh_timeout or (60 if self.accel == "kvm" else 300)
        self.workdir = Path(tempfile.mkdtemp(prefix=f"iommu-audit-{name}-"))
        self.console_log = self.workdir / "console.log"
        self.ssh_config_path = self.workdir / "ssh_config"
        self.port = 0
        self.proc: subprocess.Popen | None = None
        self.boot_seconds = 0.0

    # -- lifecycle ---------------------------------------------------------
    def __enter__(self) -> "Guest":
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def start(self) -> None:
        self._make_disks()
        self._launch()

    def reboot(self, *, cmdline_extra: str | None = None, timeout: float = 120) -> None:
        """Power the guest off and boot a new QEMU with the same disks (NVMe backing files and
        the persistent disk), optionally with another kernel command line."""
        try:
            self.run("poweroff", timeout=15)
        except subprocess.TimeoutExpired:
            pass
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise GuestBootError(f"{self.name} did not power off within {timeout}s\n{self.console()[-3000:]}")
        self.proc.stdout.close()
        if cmdline_extra is not None:
            self.cmdline_extra = cmdline_extra
        self.console_log.rename(self.workdir / f"console.{time.time_ns()}.log")  # keep the old boot's log
        self._launch()

    def _launch(self) -> None:
        t0 = time.monotonic()
        for attempt in range(3):  # the free port may be taken between probe and bind
            self.port = _free_port()
            self._write_ssh_config()
            self.proc = subprocess.Popen(
                self.qemu_command(), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT, preexec_fn=die_with_parent)
            time.sleep(0.3)
            if self.proc.poll() is None:
                break
            err = self.proc.stdout.read().decode(errors="replace")
            if "hostfwd" not in err and "host forwarding" not in err:
                raise GuestBootError(f"QEMU exited at start:\n{err}")
        self._wait_for_ssh()
        self.boot_seconds = time.monotonic() - t0

    def close(self) -> None:
        """Stop QEMU (SIGTERM, then SIGKILL) and remove the guest's temp dir."""
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc and self.proc.stdout:
            self.proc.stdout.close()
        self.proc = None
        shutil.rmtree(self.workdir, ignore_errors=True)

    # -- qemu --------------------------------------------------------------
    def kernel_cmdline(self) -> str:
        return " ".join(filter(None, [
            "console=ttyS0", "panic=-1", f"iommu_audit.hostname={self.name}",
            self.cmdline_extra]))

    def qemu_command(self) -> list[str]:
        machine = "q35"
        if self.iommu:
            machine += ",kernel-irqchip=split"  # KVM: interrupt remapping needs split irqchip
        cmd = ["qemu-system-x86_64", "-name", self.name, "-machine", machine,
               "-accel", self.accel, "-cpu", self._cpu(),
               "-smp", str(self.cpus), "-m", str(self.memory_mb),
               "-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
               "-serial", f"file:{self.console_log}",
               "-kernel", str(self.image.kernel), "-initrd", str(self.initrd),
               "-append", self.kernel_cmdline()]
        # The IOMMU must exist before the PCI devices it translates for.
        if self.iommu == "intel":
            cmd += ["-device", "intel-iommu,intremap=on,caching-mode=on"]
        elif self.iommu == "amd":
            cmd += ["-device", "amd-iommu"]  # sysbus; its AMDVI-PCI function takes a free slot
        fwd = f",guestfwd={self.guestfwd}" if self.guestfwd else ""
        cmd += ["-netdev", f"user,id=net0,restrict=on,hostfwd=tcp:127.0.0.1:{self.port}-:22{fwd}",
                "-device", f"e1000e,netdev=net0,bus=pcie.0,addr=0x{int(NIC_ADDR[8:10], 16):x}"]
        for i, serial in enumerate(self.nvme_serials):
            cmd += ["-drive", f"if=none,id=nvme{i},format=raw,file={self._disk(serial)}",
                    "-device", f"nvme,serial={serial},drive=nvme{i},bus=pcie.0,addr=0x{NVME_SLOT0 + i:x}"]
        if self.multipath_addresses:
            cmd += ["-device", "nvme-subsys,id=mpsubsys,nqn=nqn.2026-12.io.iommu-audit:mpath"]
            for i in range(2):
                cmd += ["-device", f"nvme,serial={MPATH_SERIAL},subsys=mpsubsys,bus=pcie.0,"
                                   f"addr=0x{MPATH_SLOT0 + i:x}"]
            cmd += ["-drive", f"if=none,id=mpns,format=raw,file={self.workdir / 'mpath.img'}",
                    "-device", "nvme-ns,drive=mpns,nsid=1,shared=on"]
        if self.persistent_disk:
            cmd += ["-drive", f"if=none,id=persist,format=raw,file={self.workdir / 'persist.img'}",
                    "-device", f"virtio-blk-pci,drive=persist,bus=pcie.0,addr=0x{PERSIST_SLOT:x}"]
        if self.bridge_nvme_serials:
            cmd += ["-device", f"pcie-pci-bridge,id=br0,bus=pcie.0,addr=0x{BRIDGE_SLOT:x}"]
            for i, serial in enumerate(self.bridge_nvme_serials):
                cmd += ["-drive", f"if=none,id=bnvme{i},format=raw,file={self._disk(serial)}",
                        "-device", f"nvme,serial={serial},drive=bnvme{i},bus=br0,addr=0x{i + 1:x}"]
        return cmd

    def _cpu(self) -> str:
        # The audit checks that the CPU vendor matches the IOMMU kind, as on real hosts:
        # an Intel VT-d guest gets an Intel CPU, an AMD-Vi guest an AMD one.
        model = "host" if self.accel == "kvm" else "max"
        vendor = {"intel": "GenuineIntel", "amd": "AuthenticAMD"}.get(self.iommu or "intel")
        return f"{model},vendor={vendor}"

    def _disk(self, serial: str) -> Path:
        return self.workdir / f"{serial}.img"

    def _make_disks(self) -> None:
        for serial in self.nvme_serials + self.bridge_nvme_serials:
            with open(self._disk(serial), "wb") as f:
                f.truncate(DISK_BYTES)  # sparse: costs no space until written
        if self.persistent_disk:
            with open(self.workdir / "persist.img", "wb") as f:
                f.truncate(DISK_BYTES)
            subprocess.run(["mkfs.ext4", "-q", "-F", "-L", "iommu-audit-persist", str(self.workdir / "persist.img")],
                           check=True, capture_output=True)
        if self.multipath_addresses:
            with open(self.workdir / "mpath.img", "wb") as f:
                f.truncate(DISK_BYTES)
            subprocess.run(["mkfs.ext4", "-q", "-F", "-L", "mpathdata", str(self.workdir / "mpath.img")],
                           check=True, capture_output=True)
        if self.mounted_nvme is not None:
            subprocess.run(["mkfs.ext4", "-q", "-F", "-L", "hostdata",
                            str(self._disk(self.nvme_serials[self.mounted_nvme]))],
                           check=True, capture_output=True)

    # -- ssh ---------------------------------------------------------------
    def _write_ssh_config(self) -> None:
        self.ssh_config_path.write_text(
            f"Host {self.name}\n"
            f"  HostName 127.0.0.1\n  Port {self.port}\n  User root\n"
            f"  IdentityFile {self.image.ssh_key}\n  IdentitiesOnly yes\n"
            "  StrictHostKeyChecking no\n  UserKnownHostsFile /dev/null\n  LogLevel ERROR\n"
            "  ConnectTimeout 10\n")

    def ssh_command(self, cmd: str) -> list[str]:
        return ["ssh", "-F", str(self.ssh_config_path), self.name, "--", cmd]

    def run(self, cmd: str, *, timeout: float = 60, check: bool = False) -> tuple[int, str, str]:
        """Run a shell command in the guest as root; returns (rc, stdout, stderr)."""
        res = subprocess.run(self.ssh_command(cmd), capture_output=True, text=True,
                             timeout=timeout, stdin=subprocess.DEVNULL)
        if check and res.returncode != 0:
            raise RuntimeError(f"guest {self.name}: {cmd!r} -> rc {res.returncode}\n"
                               f"{res.stdout}{res.stderr}")
        return res.returncode, res.stdout, res.stderr

    def console(self) -> str:
        try:
            return self.console_log.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def _wait_for_ssh(self) -> None:
        deadline = time.monotonic() + self.ssh_timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                out = self.proc.stdout.read().decode(errors="replace")
                raise GuestBootError(f"QEMU for {self.name} exited (rc {self.proc.returncode})"
                                     f"\n{out}\n--- console ---\n{self.console()[-6000:]}")
            if "iommu-audit-guest: ready" in self.console():
                try:
                    if self.run("true", timeout=15)[0] == 0:
                        return
                except subprocess.TimeoutExpired:
                    pass
            time.sleep(0.5)
        raise GuestBootError(f"no SSH on {self.name} (127.0.0.1:{self.port}, {self.accel}) "
                             f"after {self.ssh_timeout}s\n--- console ---\n{self.console()[-6000:]}")

    # -- helpers for test setup --------------------------------------------
    def iommu_groups(self) -> dict[str, list[str]]:
        """{group number: [BDF, ...]} from /sys/kernel/iommu_groups (empty without IOMMU)."""
        rc, out, _ = self.run("cd /sys/kernel/iommu_groups 2>/dev/null && "
                              "for g in *; do for d in $g/devices/*; do echo $g ${d##*/}; done; done")
        groups: dict[str, list[str]] = {}
        for line in out.splitlines():
            parts = line.split()
            if len(parts) == 2 and parts[1] != "*":
                groups.setdefault(parts[0], []).append(parts[1])
        return groups

    def bind_vfio(self, bdf: str) -> str:
        """Rebind a PCI device to vfio-pci; returns its IOMMU group number."""
        q = shlex.quote(bdf)
        self.run(
            f"modprobe vfio-pci && d=/sys/bus/pci/devices/{q} && "
            f"echo vfio-pci > $d/driver_override && "
            f"{{ [ ! -e $d/driver ] || echo {q} > $d/driver/unbind; }} && "
            f"echo {q} > /sys/bus/pci/drivers_probe && "
            f"[ \"$(basename $(readlink $d/driver))\" = vfio-pci ]", check=True)
        return self.run(f"basename $(readlink /sys/bus/pci/devices/{q}/iommu_group)",
                        check=True)[1].strip()

    def unbind_vfio(self, bdf: str) -> str:
        """Give the device back to its native driver; returns the driver name."""
        q = shlex.quote(bdf)
        self.run(
            f"d=/sys/bus/pci/devices/{q} && echo > $d/driver_override && "
            f"{{ [ ! -e $d/driver ] || echo {q} > $d/driver/unbind; }} && "
            f"echo {q} > /sys/bus/pci/drivers_probe", check=True)
        return self.run(f"basename $(readlink /sys/bus/pci/devices/{q}/driver)",
                        check=True)[1].strip()


def boot(image: GuestImage, name: str, **kw) -> Guest:
    """Start a guest and wait for SSH. Use ``with boot(...) as g:`` to clean up."""
    g = Guest(image, name, **kw)
    return g.__enter__()
