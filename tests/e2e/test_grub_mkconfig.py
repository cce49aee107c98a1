"""cmdline-persistent.sh with Debian's real grub-mkconfig (grub-common 2.06, /etc/grub.d scripts),
in a private mount namespace: /etc, /usr overlaid (upper layers in a temp dir) and /boot a temp
dir, so this machine's /etc and /boot never change. grub-probe is replaced by a stub that names a
fixed root device: the real one would open this machine's disks.
"""

import base64
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from iommu_audit.fix import bootconfig
from iommu_audit.fix.plan import FileChange
from iommu_audit.parsers import cmdline, grub
from tests.e2e.harness.fixtures import skip_or_fail
from tests.e2e.harness.guest_image import cache_lock

FIXES = Path(__file__).resolve().parents[2] / "fixes"
CACHE = Path.home() / ".cache" / "iommu-audit" / "grub-common"
DEBIAN = """# If you change this file, run 'update-grub' afterwards to update /boot/grub/grub.cfg.
GRUB_DEFAULT=0
GRUB_TIMEOUT=5
GRUB_DISTRIBUTOR=`lsb_release -i -s 2> /dev/null || echo Debian`
GRUB_CMDLINE_LINUX_DEFAULT='quiet intel_iommu=off'  # was debugging DMAR faults
GRUB_CMDLINE_LINUX="console=ttyS0,115200n8"
"""
# The grub.cfg lines the probe sends (probe.sh, section boot_generated).
MENU_LINE = re.compile(r"^\s*((menuentry|submenu|function)\s|linux(16|efi)?\s|set default=|}\s*$)")
NAMESPACE = r"""
set -e
t=$1 pkg=$2 fixes=$3; shift 3
mkdir -p "$t/etc-low/default" "$t/etc-up" "$t/etc-wk" "$t/usr-low/sbin" "$t/usr-up" "$t/usr-wk" "$t/boot"
cp -r "$pkg/etc/grub.d" "$t/etc-low/"
printf '#!/bin/sh\ncase "$*" in *fs_uuid*) echo 6a1c0d2e-0000-4000-8000-000000000001;; *fs*) echo ext2;;\n*abstraction*|*partmap*) ;; *) echo /dev/vda1;; esac\n' > "$t/usr-low/sbin/grub-probe"
chmod 755 "$t/usr-low/sbin/grub-probe"
mount -t overlay iommu-audit-etc -o "lowerdir=$t/etc-low:/etc,upperdir=$t/etc-up,workdir=$t/etc-wk" /etc
mount -t overlay iommu-audit-usr -o "lowerdir=$t/usr-low:$pkg/usr:/usr,upperdir=$t/usr-up,workdir=$t/usr-wk" /usr
mount --bind "$t/boot" /boot
mount -t tmpfs iommu-audit-run /run  # the script's lock (/run/iommu-audit.lock) stays in the namespace
mkdir -p /boot/grub && : > /boot/vmlinuz-6.1.0-99-amd64 && : > /boot/initrd.img-6.1.0-99-amd64
cp "$t/grub.before" /etc/default/grub
update-grub >"$t/update-grub.log" 2>&1
cp /boot/grub/grub.cfg "$t/cfg.before"
sh "$fixes/cmdline-persistent.sh" --step-dir "$t/step" "$@" >"$t/fix.log" 2>&1 || { cat "$t/fix.log"; exit 1; }
cp /boot/grub/grub.cfg "$t/cfg.after"; cp /etc/default/grub "$t/grub.after"
sh "$fixes/cmdline-persistent.sh" --undo --step-dir "$t/step" >"$t/undo.log" 2>&1 || { cat "$t/undo.log"; exit 1; }
cp /boot/grub/grub.cfg "$t/cfg.undone"; cp /etc/default/grub "$t/grub.undone"
"""


def grub_common() -> Path:
    """Debian's grub-common + grub2-common, unpacked (not installed) into the cache."""
    root = CACHE / "root"
    for tool in ("apt-get", "dpkg", "unshare"):
        if not shutil.which(tool):
            skip_or_fail(f"{tool} is missing")
    with cache_lock(CACHE):  # test_reboot.py may ask for it at the same time in another worker (-n 2)
        if (root / "usr/sbin/grub-mkconfig").exists():
            return root
        with tempfile.TemporaryDirectory(prefix="download-", dir=CACHE) as tmp:
            r = subprocess.run(["apt-get", "download", "grub-common", "grub2-common"], cwd=tmp, capture_output=True,
                               text=True, timeout=300)
            if r.returncode != 0:
                skip_or_fail(f"apt-get download grub-common failed: {r.stderr.strip()[-300:]}")
            for deb in Path(tmp).glob("*.deb"):
                subprocess.run(["dpkg", "-x", str(deb), f"{tmp}/root"], check=True)
            shutil.rmtree(root, ignore_errors=True)  # a partial one from an interrupted run
            Path(tmp, "root").rename(root)  # complete or absent
    return root


def linux_line(cfg: str) -> str:
    return next(line for line in cfg.splitlines() if line.strip().startswith("linux"))


def regenerate(tmp_path: Path, profile) -> Path:
    """Run cmdline-persistent.sh (fix, then undo) on Debian's grub shape with the real update-grub;
    tmp_path gets cfg.before/after/undone and grub.after/undone."""
    import os
    if os.geteuid() != 0:
        skip_or_fail("needs root (mount namespace)")
    pkg = grub_common()
    (tmp_path / "grub.before").write_text(DEBIAN)
    edit = bootconfig.needed(cmdline.params(cmdline.grub_cmdline([("/etc/default/grub", DEBIAN)])), profile)
    change = FileChange("/etc/default/grub", DEBIAN, bootconfig.edit_grub([("/etc/default/grub", DEBIAN)], edit)["/etc/default/grub"])
    args = ["--boot", "grub", "--grub-cfg", "/boot/grub/grub.cfg", *change.args()]
    r = subprocess.run(["unshare", "-m", "--propagation", "private", "--", "sh", "-c", NAMESPACE, "ns",
                        str(tmp_path), str(pkg), str(FIXES), *args], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr + (tmp_path / "update-grub.log").read_text()
    return tmp_path


def test_real_grub_mkconfig_gets_the_arguments_and_undo_restores(tmp_path, dl360):
    regenerate(tmp_path, dl360)
    before, after = linux_line((tmp_path / "cfg.before").read_text()), linux_line((tmp_path / "cfg.after").read_text())
    assert "intel_iommu=off" in before
    assert "intel_iommu=off" not in after and "intel_iommu=on" in after and "iommu=pt" in after, after
    assert "console=ttyS0,115200n8" in after and "quiet" in after
    assert "# was debugging DMAR faults" in (tmp_path / "grub.after").read_text()
    # As the audit reads it (parsers/grub.py): the entry GRUB_DEFAULT=0 boots, and every kernel entry, the
    # recovery one included (10_linux gives it GRUB_CMDLINE_LINUX only: the arguments went there).
    cfg = (tmp_path / "cfg.after").read_text().splitlines()
    menu = grub.menu([line for line in cfg if MENU_LINE.match(line)])
    picks, unknown = grub.chosen(menu, {}, False)
    assert not unknown and [e for _, e, _ in picks] == [menu.items[0]], picks
    entries = menu.entries()
    assert any("(recovery mode)" in name for name, _ in entries), entries
    for name, e in entries:
        assert {"intel_iommu=on", "iommu=pt"} <= set(e.linux.split()) and "intel_iommu=off" not in e.linux, (name, e.linux)
    assert (tmp_path / "grub.undone").read_text() == DEBIAN
    assert (tmp_path / "cfg.undone").read_text() == (tmp_path / "cfg.before").read_text()
    # A guest booted with this regenerated line: tests/e2e/test_reboot.py (its second boots).
