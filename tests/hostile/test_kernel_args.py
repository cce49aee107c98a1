"""Hostile inputs: kernel arguments and module configuration that look right until the next boot.

Each case breaks a copy of the sample host and runs the real audit on it.
"""

from tests.conftest import PROJECT
from tests.e2e.audit_run import audit

PROFILE = PROJECT / "profiles" / "dl360-gen9.yaml"
HOST = "dl360-gen9-01"


def test_a_later_opposite_argument_undoes_a_required_one(host, tmp_path):
    # iommu=pt iommu=nopt: pt is on the line, but nopt is what the kernel keeps.
    host.replace("proc/cmdline", "iommu=pt", "iommu=pt iommu=nopt")
    host.replace("etc/default/grub", 'iommu=pt"', 'iommu=pt iommu=nopt"')
    host.replace("boot/grub/grub.cfg", "iommu=pt", "iommu=pt iommu=nopt")
    run = audit(tmp_path, PROFILE, f"--sysroot={host.root}", "-k", "cmdline")
    assert run.rc == 1, run.output
    assert run.failed() == {f"test_cmdline_iommu[{HOST}]", f"test_cmdline_persistent[{HOST}]"}, run.output
    assert "iommu=pt is required by the profile and missing" in run.messages[f"test_cmdline_iommu[{HOST}]"]


def test_vfio_blacklisted_for_the_next_boot_fails_while_loaded_now(host, tmp_path):
    # Debian/RHEL build vfio as modules; they are loaded now, and modprobe.d keeps them out at boot.
    host.write("lib/modules/5.15.0-91-generic/modules.builtin", "kernel/drivers/iommu/intel/iommu.ko\n")
    host.append("proc/modules", "vfio_iommu_type1 45056 0 - Live 0x0000000000000000\n"
                "vfio_pci 16384 0 - Live 0x0000000000000000\nvfio 45056 2 vfio_iommu_type1,vfio_pci, Live 0x0\n")
    host.write("etc/modprobe.d/blacklist-vfio.conf", "# leftover from a GPU driver install\nblacklist vfio_pci\n"
               "install vfio_iommu_type1 /bin/false\n")
    run = audit(tmp_path, PROFILE, f"--sysroot={host.root}", "-k", "vfio_modules")
    assert run.rc == 1, run.output
    msg = run.messages[f"test_vfio_modules[{HOST}]"]
    assert "loaded now, but VFIO will not load at boot" in msg
    assert "'blacklist vfio_pci' in /etc/modprobe.d/blacklist-vfio.conf" in msg
    assert "'install vfio_iommu_type1 /bin/false'" in msg


def test_a_stray_kernel_cmdline_file_does_not_stand_in_for_grub(host, tmp_path):
    # grub boots this host (BOOT_IMAGE=), its files lost the arguments; a leftover
    # /etc/kernel/cmdline that has them must not make the next boot look right.
    host.replace("etc/default/grub", '"intel_iommu=on iommu=pt"', '"quiet"')
    host.replace("boot/grub/grub.cfg", " intel_iommu=on iommu=pt", "")
    host.write("etc/kernel/cmdline", "root=/dev/mapper/vg0-root ro intel_iommu=on iommu=pt\n")
    run = audit(tmp_path, PROFILE, f"--sysroot={host.root}", "-k", "cmdline_persistent")
    assert run.rc == 1, run.output
    msg = run.messages[f"test_cmdline_persistent[{HOST}]"]
    assert "/etc/default/grub" in msg and "/boot/grub/grub.cfg" in msg and "intel_iommu=on is missing" in msg


def test_a_driverctl_file_that_nothing_applies_at_boot_fails(host, tmp_path):
    # managed='no' (common with driverctl): only /etc/driverctl.d/pci-* binds the NVMe drives at boot.
    for vm in ("z-ceph-1", "z-ceph-2", "z-ceph-3"):
        host.replace(f"etc/libvirt/qemu/{vm}.xml", "managed='yes'", "managed='no'")
    # driverctl removed (its rule gone), the override files left behind.
    host.remove("lib/udev/rules.d/05-driverctl.rules")
    run = audit(tmp_path, PROFILE, f"--sysroot={host.root}", "-k", "vfio_binding_persistent")
    assert run.rc == 1, run.output
    nvme = {f"test_vfio_binding_persistent[{HOST}-ceph-nvme-{i}]" for i in (1, 2, 3)}
    assert run.failed() == nvme, run.output
    msg = run.messages[f"test_vfio_binding_persistent[{HOST}-ceph-nvme-1]"]
    assert "/etc/driverctl.d/pci-0000:06:00.0 says vfio-pci, but nothing applies it at boot" in msg
    assert "05-driverctl.rules is in none of /etc, /run, /usr/local/lib, /usr/lib, /lib" in msg
    assert "fixes/vfio-binding-persistent.sh 0000:06:00.0" in msg

    # Reinstalled, but masked by the admin: a same-named link to /dev/null in /etc/udev/rules.d.
    host.write("lib/udev/rules.d/05-driverctl.rules", (PROJECT / "samples/dl360-gen9-01/lib/udev/rules.d/"
                                                        "05-driverctl.rules").read_text())
    host.path("etc/udev/rules.d").mkdir(parents=True)
    host.path("etc/udev/rules.d/05-driverctl.rules").symlink_to("/dev/null")
    run = audit(tmp_path, PROFILE, f"--sysroot={host.root}", "-k", "vfio_binding_persistent")
    assert run.rc == 1 and run.failed() == nvme, run.output
    assert "/etc/udev/rules.d/05-driverctl.rules masks it (a link to /dev/null)" in \
        run.messages[f"test_vfio_binding_persistent[{HOST}-ceph-nvme-1]"]

    host.remove("etc/udev/rules.d/05-driverctl.rules")  # unmasked: the same copy passes
    run = audit(tmp_path, PROFILE, f"--sysroot={host.root}", "-k", "vfio_binding_persistent")
    assert run.rc == 0 and not run.failed(), run.output


def test_grub_judged_on_the_entry_it_boots_not_the_first(host, tmp_path):
    # GRUB_DEFAULT=saved + GRUB_SAVEDEFAULT: one boot into recovery mode made it the saved entry. The
    # first entry of grub.cfg has intel_iommu=on; the one grub boots does not.
    uuid = "b2d4f6a8-1c3e-4a5b-9d7f-0e2c4a6b8d10"
    saved = f"gnulinux-advanced-{uuid}>gnulinux-5.15.0-91-generic-recovery-{uuid}"
    host.replace("etc/default/grub", "GRUB_DEFAULT=0", "GRUB_DEFAULT=saved\nGRUB_SAVEDEFAULT=true")
    host.write("boot/grub/grub.cfg", (PROJECT / "tests/data/grub/ubuntu-22.04-grub.cfg").read_text())
    env = f"# GRUB Environment Block\nsaved_entry={saved}\n"
    host.write("boot/grub/grubenv", env + "#" * (1024 - len(env)))
    run = audit(tmp_path, PROFILE, f"--sysroot={host.root}", "-k", "cmdline")
    assert run.rc == 1, run.output
    assert run.failed() == {f"test_cmdline_persistent[{HOST}]"}, run.output
    msg = run.messages[f"test_cmdline_persistent[{HOST}]"]
    assert ("/boot/grub/grub.cfg entry 'Advanced options for Ubuntu > Ubuntu, with Linux 5.15.0-91-generic "
            f"(recovery mode)' (grubenv saved_entry={saved}): intel_iommu=on is missing") in msg
    assert "grub-set-default" in msg
