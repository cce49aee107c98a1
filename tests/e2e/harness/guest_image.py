"""Build (and cache) the guest kernel + initramfs used by the real-kernel e2e tests.

The guest is a Debian kernel (``linux-image-amd64``'s target) with a small
initramfs as its whole root file system: busybox, dash, GNU coreutils (testinfra
needs real ``ls``/``stat`` options), kmod with a trimmed /lib/modules, pciutils,
dropbear for root SSH with a key generated into the cache. No disk root fs,
so building takes seconds and needs no loop devices or privileges beyond apt.

Binaries are copied from this machine (see install.sh for the packages) with
the shared libraries ``ldd`` reports; the kernel comes from ``apt-get download``.
"""
from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import gzip
import hashlib
import os
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Iterator

HERE = Path(__file__).resolve().parent
INIT_SCRIPT = HERE / "guest_init.sh"

# Modules to put in the initramfs; their modules.dep closure is added.
# crc32c_*: only a softdep (crypto-crc32c) of nvme-core and ext4.
GUEST_MODULES = [
    "nvme", "nvme-core", "vfio", "vfio-pci", "vfio-pci-core", "vfio_iommu_type1",
    "irqbypass", "e1000e", "virtio_net", "virtio_pci", "ext4", "jbd2", "mbcache",
    "crc16", "crc32c_generic", "crc32c-intel",
    "virtio_blk",  # the opt-in persistent disk (qemu.Guest(persistent_disk=True))
]
# Files copied verbatim from the kernel's /lib/modules/<ver> so depmod/modprobe
# know what is built in (modprobe of a builtin then succeeds quietly).
MODULE_META = ["modules.builtin", "modules.builtin.modinfo", "modules.order"]

# Host binaries (ELF) copied with their libraries. Path in guest = path on host,
# with /bin, /sbin, /lib* folded into /usr (the guest uses the merged-/usr layout).
EXTRA_BINARIES = [
    "/usr/sbin/dropbear", "/usr/bin/dropbearkey", "/usr/bin/dash", "/bin/kmod",
    "/usr/bin/lspci", "/usr/bin/setpci", "/usr/bin/getent",
    "/usr/bin/lsblk", "/usr/bin/findmnt", "/usr/sbin/blkid",
    # util-linux mount canonicalizes /dev/disk/by-id/... to /dev/nvmeXnY in
    # /proc/mounts as on a real host (busybox mount records the symlink).
    "/usr/bin/mount", "/usr/bin/umount",
]
KMOD_LINKS = ["modprobe", "insmod", "rmmod", "lsmod", "modinfo", "depmod"]
REQUIRED_TOOLS = {
    "apt-get": "apt", "dpkg": "dpkg", "depmod": "kmod", "cpio": "cpio",
    "ssh-keygen": "openssh-client", "ssh": "openssh-client", "ldd": "libc-bin",
    "busybox": "busybox-static", "dropbear": "dropbear-bin",
    "dropbearkey": "dropbear-bin", "dash": "dash", "lspci": "pciutils",
    "mkfs.ext4": "e2fsprogs", "qemu-system-x86_64": "qemu-system-x86",
}


@dataclasses.dataclass(frozen=True)
class GuestImage:
    kernel: Path          # vmlinuz
    initrd: Path          # initramfs.cpio.gz
    ssh_key: Path         # private key, its public half is root's authorized_keys
    kernel_version: str   # e.g. "6.1.0-56-amd64"
    build_seconds: float  # time of the build that produced the cache (0 if unknown)
    size_bytes: int       # kernel + initrd


def cache_root() -> Path:
    env = os.environ.get("IOMMU_AUDIT_GUEST_CACHE")
    if env:
        return Path(env)
    return Path.home() / ".cache" / "iommu-audit" / "guest"


def unavailable_reason() -> str | None:
    """Why the real-kernel harness cannot run here, or None when it can.

    Tests skip with this text locally and fail with it under CI=true
    (see fixtures.skip_or_fail).
    """
    missing = sorted({f"{tool} (apt: {pkg})" for tool, pkg in REQUIRED_TOOLS.items()
                      if not shutil.which(tool, path=_sbin_path())})
    if missing:
        return ("real-kernel e2e harness needs missing tools: " + ", ".join(missing)
                + "; run tests/e2e/harness/install.sh")
    if os.geteuid() != 0:
        return "real-kernel e2e harness must run as root (libvirtd, apt-get download)"
    return None


def _sbin_path() -> str:
    return os.environ.get("PATH", "") + ":/usr/sbin:/sbin:/usr/bin:/bin"


def _run(args: list[str], **kw) -> subprocess.CompletedProcess:
    return subprocess.run(args, check=True, capture_output=True, text=True, **kw)


def kernel_package() -> tuple[str, str]:
    """(package, kernel version) that the linux-image-amd64 metapackage points to."""
    out = _run(["apt-cache", "depends", "linux-image-amd64"]).stdout
    m = re.search(r"Depends: (linux-image-(\d[^\s]*-amd64))\b", out)
    if not m:
        raise RuntimeError("cannot resolve linux-image-amd64 (run apt-get update?):\n" + out)
    return m.group(1), m.group(2)


def _build_hash() -> str:
    h = hashlib.sha256()
    for f in (Path(__file__), INIT_SCRIPT):
        h.update(f.read_bytes())
    return h.hexdigest()[:12]


def build(cache_dir: Path | None = None, *, force: bool = False) -> GuestImage:
    """Return the cached guest image, building it first when needed.

    The cache key is the kernel version plus a hash of this file and the guest
    /init, so editing either rebuilds. Safe to call repeatedly (idempotent).
    """
    cache_dir = Path(cache_dir or cache_root())
    pkg, kver = kernel_package()
    out = cache_dir / f"{kver}-{_build_hash()}"
    img = _image_at(out, kver)
    if img and not force:
        os.utime(out)  # in use: see the pruning below
        return img
    reason = unavailable_reason()
    if reason:
        raise RuntimeError(reason)
    with cache_lock(cache_dir):
        img = _image_at(out, kver)  # another process (an xdist worker) may have built it meanwhile
        if img and not force:
            return img
        return _build(cache_dir, out, pkg, kver)


@contextlib.contextmanager
def cache_lock(directory: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``directory`` (created if missing) for building into it:
    test processes running at once (``pytest -n 2``) build each cache entry once."""
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file is closed
        yield


def _build(cache_dir: Path, out: Path, pkg: str, kver: str) -> GuestImage:
    start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="guest-build-", dir=cache_dir) as tmp:
        tmp = Path(tmp)
        staging = tmp / "out"
        staging.mkdir()
        kdir = _fetch_kernel(pkg, kver, tmp)
        shutil.copy2(kdir / "boot" / f"vmlinuz-{kver}", staging / "vmlinuz")
        _ssh_keypair(staging)
        root = tmp / "root"
        _make_rootfs(root, kdir, kver, (staging / "id_ed25519.pub").read_text())
        _pack_cpio(root, staging / "initramfs.cpio.gz")
        (staging / "build-seconds").write_text(f"{time.monotonic() - start:.1f}\n")
        if out.exists():
            shutil.rmtree(out)
        staging.rename(out)  # atomic publish: a half-built cache is never used
    # Superseded kernels / build scripts, once unused for a day: several checkouts (git
    # worktrees) with different guest scripts share this cache and may be booting theirs now.
    for old in cache_dir.glob("*-amd64-*"):
        if old != out and old.is_dir() and old.stat().st_mtime < time.time() - 86400:
            shutil.rmtree(old, ignore_errors=True)
    img = _image_at(out, kver)
    assert img is not None
    return img


def _image_at(out: Path, kver: str) -> GuestImage | None:
    files = [out / n for n in ("vmlinuz", "initramfs.cpio.gz", "id_ed25519", "build-seconds")]
    if not all(f.exists() for f in files):
        return None
    return GuestImage(
        kernel=files[0], initrd=files[1], ssh_key=files[2], kernel_version=kver,
        build_seconds=float(files[3].read_text() or 0),
        size_bytes=files[0].stat().st_size + files[1].stat().st_size,
    )


def _fetch_kernel(pkg: str, kver: str, tmp: Path) -> Path:
    dl = tmp / "deb"
    dl.mkdir()
    os.chmod(tmp, 0o755)  # apt drops to user _apt for downloads when it can
    os.chmod(dl, 0o777)
    _run(["apt-get", "download", "-q", pkg], cwd=dl)
    deb = next(dl.glob("*.deb"))
    kdir = tmp / "kernel"
    _run(["dpkg", "-x", str(deb), str(kdir)])
    deb.unlink()
    if not (kdir / "lib" / "modules" / kver).is_dir():
        raise RuntimeError(f"{deb.name} has no /lib/modules/{kver}")
    _run(["depmod", "-b", str(kdir), kver])
    return kdir


def _ssh_keypair(out: Path) -> None:
    _run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "iommu-audit-e2e",
          "-f", str(out / "id_ed25519")])


def module_closure(moddir: Path, names: list[str]) -> set[str]:
    """Relative .ko paths for ``names`` plus everything they depend on (modules.dep)."""
    deps: dict[str, list[str]] = {}
    by_name: dict[str, str] = {}
    for line in (moddir / "modules.dep").read_text().splitlines():
        mod, _, rest = line.partition(":")
        deps[mod] = rest.split()
        by_name[_modname(mod)] = mod
    builtin = {_modname(l) for l in (moddir / "modules.builtin").read_text().split()}
    todo, seen = [], set()
    for n in names:
        key = n.replace("-", "_")
        if key in by_name:
            todo.append(by_name[key])
        elif key not in builtin:
            raise RuntimeError(f"kernel module {n} neither loadable nor built in")
    while todo:
        mod = todo.pop()
        if mod not in seen:
            seen.add(mod)
            todo.extend(deps[mod])
    return seen


def _modname(path: str) -> str:
    return Path(path).name.split(".ko")[0].replace("-", "_")


def _guest_path(root: Path, host_path: str) -> Path:
    """Map a host path into the merged-/usr guest tree."""
    p = Path(os.path.normpath(host_path))
    parts = p.parts[1:]
    if parts and parts[0] in ("bin", "sbin", "lib", "lib64"):
        parts = ("usr",) + parts
    return root.joinpath(*parts)


def _copy_file(root: Path, host_path: str, mode: int | None = None) -> None:
    dst = _guest_path(root, host_path)
    dst.parent.mkdir(parents=True, exist_ok=True)
    # Never write through an existing entry: it may be a symlink, and an
    # absolute one would resolve on *this* machine, not in the guest tree.
    if dst.is_symlink() or dst.exists():
        dst.unlink()
    if not dst.parent.resolve().is_relative_to(root.resolve()):
        raise RuntimeError(f"{dst} escapes the guest tree {root}")
    shutil.copyfile(os.path.realpath(host_path), dst)  # follow symlinks: copy content
    os.chmod(dst, mode if mode is not None else os.stat(os.path.realpath(host_path)).st_mode & 0o7777)


def _copy_elf(root: Path, binary: str) -> None:
    _copy_file(root, binary)
    _copy_libs(root, binary)


def _copy_libs(root: Path, binary: str) -> None:
    """The shared libraries ``ldd`` reports for ``binary``, from this machine."""
    res = subprocess.run(["ldd", binary], capture_output=True, text=True)
    if res.returncode != 0:  # static binary ("not a dynamic executable")
        return
    for m in re.finditer(r"(?:=>\s*)?(/\S+)\s+\(0x", res.stdout):
        lib = m.group(1)
        if not _guest_path(root, lib).exists():
            _copy_file(root, lib)


def _make_rootfs(root: Path, kdir: Path, kver: str, pubkey: str) -> None:
    for d in ("usr/bin", "usr/sbin", "usr/lib", "usr/lib64", "etc/modprobe.d",
              "etc/driverctl.d", "etc/dropbear", "root/.ssh", "proc", "sys", "dev",
              "run", "tmp", "var/log", "mnt"):
        (root / d).mkdir(parents=True, exist_ok=True)
    for link in ("bin", "sbin", "lib", "lib64"):
        (root / link).symlink_to(f"usr/{link}")
    (root / "var/run").symlink_to("../run")
    os.chmod(root / "tmp", 0o1777)

    # GNU coreutils first, busybox fills the gaps, dash is /bin/sh.
    coreutils = _run(["dpkg", "-L", "coreutils"]).stdout.split()
    for f in coreutils:
        if re.match(r"^/(usr/)?s?bin/[^/]+$", f) and os.path.isfile(f):
            _copy_elf(root, f)
    busybox = shutil.which("busybox", path=_sbin_path())
    _copy_file(root, busybox, 0o755)
    bb_guest = _guest_path(root, busybox)
    for applet in _run([busybox, "--list-full"]).stdout.split():
        dst = _guest_path(root, "/" + applet)
        if not dst.exists() and not dst.is_symlink():
            dst.parent.mkdir(parents=True, exist_ok=True)
            dst.symlink_to(os.path.relpath(bb_guest, dst.parent))  # relative: safe on the host
    for b in EXTRA_BINARIES:
        if os.path.exists(b):
            _copy_elf(root, b)
    sh = root / "usr/bin/sh"
    if sh.exists() or sh.is_symlink():
        sh.unlink()
    sh.symlink_to("dash")
    for name in KMOD_LINKS:
        for d in ("usr/sbin", "usr/bin"):
            p = root / d / name
            if p.exists() or p.is_symlink():
                p.unlink()
        (root / "usr/sbin" / name).symlink_to("../bin/kmod")
    ids = Path("/usr/share/misc/pci.ids")
    if ids.exists():
        _copy_file(root, str(ids), 0o644)

    _copy_modules(root, kdir, kver)
    _write_etc(root, pubkey)
    shutil.copyfile(INIT_SCRIPT, root / "init")
    os.chmod(root / "init", 0o755)


def _copy_modules(root: Path, kdir: Path, kver: str) -> None:
    src = kdir / "lib/modules" / kver
    dst = root / "usr/lib/modules" / kver
    for rel in sorted(module_closure(src, GUEST_MODULES)):
        (dst / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src / rel, dst / rel)
    for meta in MODULE_META:
        shutil.copy2(src / meta, dst / meta)
    _run(["depmod", "-b", str(root / "usr"), kver])  # index only what we shipped


def _write_etc(root: Path, pubkey: str) -> None:
    etc = root / "etc"
    files = {
        "passwd": "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n",
        "group": "root:x:0:\nnogroup:x:65534:\n",
        "shadow": "root:*:19000:0:99999:7:::\n",
        "shells": "/bin/sh\n/bin/dash\n/usr/bin/sh\n",
        "nsswitch.conf": "passwd: files\ngroup: files\nshadow: files\nhosts: files\n",
        "hosts": "127.0.0.1 localhost\n",
        "os-release": 'PRETTY_NAME="iommu-audit test guest (Debian 12 kernel)"\nNAME="Debian GNU/Linux"\nID=debian\nVERSION_ID="12"\n',
        "profile": "export PATH=/usr/sbin:/usr/bin:/sbin:/bin\n",
        # busybox init: respawn dropbear, run sync on poweroff.
        "inittab": ("::respawn:/usr/sbin/dropbear -F -E -s -p 22 -P /run/dropbear.pid"
                    " -r /etc/dropbear/dropbear_ed25519_host_key\n"
                    "::shutdown:/bin/sync\n"),
    }
    for name, text in files.items():
        (etc / name).write_text(text)
    os.chmod(etc / "shadow", 0o600)
    os.chmod(root / "root", 0o700)
    os.chmod(root / "root/.ssh", 0o700)
    (root / "root/.ssh/authorized_keys").write_text(pubkey)
    os.chmod(root / "root/.ssh/authorized_keys", 0o600)
    _run(["dropbearkey", "-t", "ed25519", "-f", str(etc / "dropbear/dropbear_ed25519_host_key")])


def _pack_cpio(root: Path, out: Path) -> None:
    # newc format with root ownership; file list sorted for reproducible output.
    names = sorted(str(p.relative_to(root)) for p in root.rglob("*"))
    data = subprocess.run(
        ["cpio", "--quiet", "-o", "-H", "newc", "-R", "0:0"], cwd=root,
        input="\n".join(names).encode() + b"\n", capture_output=True, check=True,
    ).stdout
    with gzip.open(out, "wb", compresslevel=6) as f:
        f.write(data)


# -- opt-in overlays: real udev (and driverctl) ---------------------------------
# Appended to the base initramfs as a second cpio archive (the kernel unpacks
# concatenated archives in order), so the default guest stays byte for byte
# what it was and pays nothing. Debian 12's own packages, apt-get download +
# dpkg -x: udevadm is also systemd-udevd (argv[0]); it links libsystemd-shared
# statically, its other libraries come from this machine like EXTRA_BINARIES.
UDEV_PACKAGES = ["udev"]
DRIVERCTL_PACKAGES = ["driverctl"]
# Without .link files, net_setup_link renames nothing: eth0 stays eth0 as the
# harness (and its README table) expects; hwdb (8 MB) is not needed by any rule we test.
UDEV_SKIP = re.compile(r"^(lib/systemd/network/|lib/udev/hwdb\.d/|usr/share/|etc/init\.d/|lib/systemd/system/"
                       r"(?!driverctl@))")


def with_udev(image: GuestImage, *, driverctl: bool = False) -> GuestImage:
    """The same guest with Debian's systemd-udevd/udevadm (and driverctl) in its initramfs.

    Built once per base image into its cache dir (``initramfs-udev.cpio.gz`` /
    ``initramfs-driverctl.cpio.gz``). The guest /init starts udevd when udevadm is present.
    """
    name = "driverctl" if driverctl else "udev"
    out = image.initrd.parent / f"initramfs-{name}.cpio.gz"
    with cache_lock(image.initrd.parent):  # pytest -n 2: one worker builds it, the other waits
        if not out.exists():
            base = set(_cpio_names(image.initrd))
            layers = [(UDEV_PACKAGES, [])] + ([(DRIVERCTL_PACKAGES, ["/usr/bin/bash"])] if driverctl else [])
            parts = [image.initrd.read_bytes()]
            parts += [_overlay(packages, extra, base, image.initrd.parent) for packages, extra in layers]
            tmp = out.with_suffix(".tmp")
            tmp.write_bytes(b"".join(parts))
            tmp.rename(out)
    return dataclasses.replace(image, initrd=out,
                               size_bytes=image.kernel.stat().st_size + out.stat().st_size)


def _cpio_names(initrd: Path) -> list[str]:
    listing = subprocess.run(["cpio", "--quiet", "-t"], input=gzip.decompress(initrd.read_bytes()),
                             capture_output=True, check=True).stdout
    return listing.decode().split("\n")


def _overlay(packages: list[str], extra_binaries: list[str], base: set[str], cache: Path) -> bytes:
    """A gzip'd cpio of these Debian packages' files (+ host binaries), minus what the base has."""
    with tempfile.TemporaryDirectory(prefix="guest-overlay-", dir=cache) as tmp:
        tmp = Path(tmp)
        dl, pkg, root = tmp / "deb", tmp / "pkg", tmp / "root"
        dl.mkdir()
        os.chmod(tmp, 0o755)  # apt drops to user _apt for downloads when it can
        os.chmod(dl, 0o777)
        _run(["apt-get", "download", "-q", *packages], cwd=dl)
        for deb in dl.glob("*.deb"):
            _run(["dpkg", "-x", str(deb), str(pkg)])
        for f in sorted(pkg.rglob("*")):
            rel = f.relative_to(pkg).as_posix()
            if f.is_dir() or UDEV_SKIP.match(rel):
                continue
            dst = _guest_path(root, "/" + rel)
            dst.parent.mkdir(parents=True, exist_ok=True)
            if f.is_symlink():  # e.g. systemd-udevd -> /bin/udevadm: relative, inside the guest tree
                target = _guest_path(root, os.path.join("/" + os.path.dirname(rel), os.readlink(f)))
                dst.symlink_to(os.path.relpath(target, dst.parent))
                continue
            shutil.copy2(f, dst)
            if os.access(f, os.X_OK) and open(f, "rb").read(4) == b"\x7fELF":
                _copy_libs(root, str(f))
        for b in extra_binaries:
            _copy_elf(root, b)
        # Files the base already has (libc, ...) are left out; directories stay (harmless).
        names = sorted(n for n in (q.relative_to(root).as_posix() for q in root.rglob("*"))
                       if n not in base or (root / n).is_dir())
        data = subprocess.run(["cpio", "--quiet", "-o", "-H", "newc", "-R", "0:0"], cwd=root,
                              input="\n".join(names).encode() + b"\n", capture_output=True, check=True).stdout
        return gzip.compress(data, compresslevel=6)


if __name__ == "__main__":
    t = time.monotonic()
    image = build(force=bool(os.environ.get("FORCE")))
    print(f"{image}\nwall: {time.monotonic() - t:.1f}s")
