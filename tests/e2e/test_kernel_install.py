"""cmdline-persistent.sh --boot kernel-cmdline with the real kernel-install (Debian 12's systemd 252:
/usr/bin/kernel-install and its /usr/lib/kernel/install.d plugins) on a systemd-boot layout
(/boot/loader/entries.srel "type1", an entry per kernel), in a private mount namespace: /etc and
/usr overlaid (upper layers in a temp dir), /boot a temp dir, /run a tmpfs, so this machine's files never change.

grubby and proxmox-boot-tool are not packaged for Debian (apt-cache has neither): their branches of
the script are not run against the real tools here.
"""

import base64
import os
import shutil
import subprocess
from pathlib import Path

from iommu_audit.fix import bootconfig
from iommu_audit.fix.plan import FileChange
from iommu_audit.parsers import cmdline
from tests.e2e.harness.fixtures import skip_or_fail

FIXES = Path(__file__).resolve().parents[2] / "fixes"
KVER = "6.1.0-99-amd64"
# A Proxmox/systemd-boot host's /etc/kernel/cmdline, with a wrong argument to remove.
CMDLINE = "root=ZFS=rpool/ROOT/pve-1 boot=zfs intel_iommu=off quiet\n"
NAMESPACE = r"""
set -e
t=$1 fixes=$2 k=$3; shift 3
mkdir -p "$t/etc-up" "$t/etc-wk" "$t/usr-up" "$t/usr-wk" "$t/boot/loader/entries"
mount -t overlay iommu-audit-etc -o "lowerdir=/etc,upperdir=$t/etc-up,workdir=$t/etc-wk" /etc
mount -t overlay iommu-audit-usr -o "lowerdir=/usr,upperdir=$t/usr-up,workdir=$t/usr-wk" /usr
mount --bind "$t/boot" /boot
mount -t tmpfs iommu-audit-run /run  # the script's lock (/run/iommu-audit.lock) stays in the namespace
echo type1 > /boot/loader/entries.srel
mkdir -p /etc/kernel "/usr/lib/modules/$k" && printf 'not a kernel\n' > "/boot/vmlinuz-$k"
cp "$t/cmdline.before" /etc/kernel/cmdline
kernel-install add "$k" "/boot/vmlinuz-$k" >"$t/install.log" 2>&1
snap() { (cd /boot && find . -type f | sort | xargs md5sum) > "$t/boot.$1"; cat /boot/loader/entries/*.conf > "$t/entry.$1"; cp /etc/kernel/cmdline "$t/cmdline.$1"; }
snap before
sh "$fixes/cmdline-persistent.sh" --step-dir "$t/step" "$@" >"$t/fix.log" 2>&1 || { cat "$t/fix.log"; exit 1; }
snap after
sh "$fixes/cmdline-persistent.sh" --undo --step-dir "$t/step" >"$t/undo.log" 2>&1 || { cat "$t/undo.log"; exit 1; }
snap undone
"""


def test_real_kernel_install_gets_the_arguments_and_undo_restores_byte_for_byte(tmp_path, dl360):
    if os.geteuid() != 0:
        skip_or_fail("needs root (mount namespace)")
    for tool in ("kernel-install", "unshare"):
        if not shutil.which(tool):
            skip_or_fail(f"{tool} is missing (Debian: apt-get install systemd util-linux)")
    (tmp_path / "cmdline.before").write_text(CMDLINE)
    edit = bootconfig.needed(cmdline.params(CMDLINE), dl360)
    change = FileChange("/etc/kernel/cmdline", CMDLINE, bootconfig.edit_kernel_cmdline(CMDLINE, edit))
    args = ["--boot", "kernel-cmdline", *change.args()]
    r = subprocess.run(["unshare", "-m", "--propagation", "private", "--", "sh", "-c", NAMESPACE, "ns",
                        str(tmp_path), str(FIXES), KVER, *args], capture_output=True, text=True, timeout=300)
    logs = "".join((tmp_path / f).read_text() for f in ("install.log", "fix.log") if (tmp_path / f).exists())
    assert r.returncode == 0, r.stdout + r.stderr + logs
    before, after = (tmp_path / "entry.before").read_text(), (tmp_path / "entry.after").read_text()
    machine_id = Path("/etc/machine-id").read_text().strip()
    assert f"/{machine_id}/{KVER}/linux" in before, before  # the entry kernel-install wrote for this layout
    options = next(line for line in after.splitlines() if line.startswith("options")).split()[1:]
    assert "intel_iommu=off" in before and "intel_iommu=off" not in options, after
    assert {"intel_iommu=on", "iommu=pt", "root=ZFS=rpool/ROOT/pve-1", "boot=zfs", "quiet"} <= set(options), after
    assert "kernel-install add" in (tmp_path / "fix.log").read_text()
    # Undo: /etc/kernel/cmdline from its backup, kernel-install again: every file under /boot as before.
    assert (tmp_path / "cmdline.undone").read_bytes() == CMDLINE.encode()
    assert (tmp_path / "entry.undone").read_bytes() == (tmp_path / "entry.before").read_bytes()
    assert (tmp_path / "boot.undone").read_text() == (tmp_path / "boot.before").read_text()
