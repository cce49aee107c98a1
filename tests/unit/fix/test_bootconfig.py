"""The boot configuration edit on copies of real /etc/default/grub and /etc/kernel/cmdline shapes."""

from dataclasses import replace

import pytest

from iommu_audit.fix import bootconfig
from iommu_audit.parsers import cmdline
from iommu_audit.rules.kernel import cmdline_problems

# Ubuntu 22.04's file as installed (comments, backticks), with a typical admin edit.
UBUNTU = """# If you change this file, run 'update-grub' afterwards to update
# /boot/grub/grub.cfg.
# For full documentation of the options in this file, see:
#   info -f grub -n 'Simple configuration'

GRUB_DEFAULT=0
GRUB_TIMEOUT_STYLE=hidden
GRUB_TIMEOUT=0
GRUB_DISTRIBUTOR=`lsb_release -i -s 2> /dev/null || echo Debian`
GRUB_CMDLINE_LINUX_DEFAULT="quiet splash"
GRUB_CMDLINE_LINUX=""

# Uncomment to enable BadRAM filtering, modify to suit your needs
#GRUB_BADRAM="0x01234567,0xfefefefe,0x89abcdef,0xefefefef"
"""
# Debian 12: intel_iommu=off left from a test, single quotes, a trailing comment.
DEBIAN = """GRUB_DEFAULT=0
GRUB_TIMEOUT=5
GRUB_DISTRIBUTOR=`lsb_release -i -s 2> /dev/null || echo Debian`
GRUB_CMDLINE_LINUX_DEFAULT='quiet intel_iommu=off'  # was debugging DMAR faults
GRUB_CMDLINE_LINUX="console=ttyS0,115200n8 intel_iommu=off"
"""
# Proxmox VE 8 (grub boot): duplicates and the usual iommu=pt already there.
PROXMOX = """GRUB_DEFAULT=0
GRUB_TIMEOUT=5
GRUB_DISTRIBUTOR="Proxmox VE"
GRUB_CMDLINE_LINUX_DEFAULT="quiet iommu=pt iommu=pt"
GRUB_CMDLINE_LINUX=""
GRUB_DISABLE_OS_PROBER=true
"""
# RHEL 9 (BLS): GRUB_CMDLINE_LINUX holds everything; grubby edits the entries.
RHEL = """GRUB_TIMEOUT=5
GRUB_DISTRIBUTOR="$(sed 's, release .*$,,g' /etc/system-release)"
GRUB_DEFAULT=saved
GRUB_DISABLE_SUBMENU=true
GRUB_TERMINAL_OUTPUT="console"
GRUB_CMDLINE_LINUX="crashkernel=1G-4G:192M,4G-64G:256M,64G-:512M resume=/dev/mapper/rhel-swap rd.lvm.lv=rhel/root rd.lvm.lv=rhel/swap rhgb quiet"
GRUB_DISABLE_RECOVERY="true"
GRUB_ENABLE_BLSCFG=true
"""
# A grub.d drop-in that extends the earlier value by reference (read after /etc/default/grub).
DROPIN = 'GRUB_CMDLINE_LINUX="$GRUB_CMDLINE_LINUX pcie_acs_override=downstream,multifunction"\n'


@pytest.fixture
def intel(dl360):
    return replace(dl360, cmdline_require=["iommu=pt"], cmdline_forbid=["nomodeset"])


def fixed(files, profile):
    line = cmdline.grub_cmdline(files)
    edit = bootconfig.needed(cmdline.params(line), profile)
    new = bootconfig.edit_grub(files, edit)
    after = [(p, new.get(p, t)) for p, t in files]
    return new, cmdline.grub_cmdline(after)


def test_ubuntu_gets_the_arguments_and_keeps_everything_else(intel):
    new, line = fixed([("/etc/default/grub", UBUNTU)], intel)
    text = new["/etc/default/grub"]
    assert 'GRUB_CMDLINE_LINUX="intel_iommu=on iommu=pt"' in text
    assert text.replace('GRUB_CMDLINE_LINUX="intel_iommu=on iommu=pt"', 'GRUB_CMDLINE_LINUX=""') == UBUNTU
    assert cmdline_problems(cmdline.params(line), intel) == []


def test_debian_off_is_removed_everywhere_with_quotes_and_comment_kept(intel):
    new, line = fixed([("/etc/default/grub", DEBIAN)], intel)
    text = new["/etc/default/grub"]
    assert "GRUB_CMDLINE_LINUX_DEFAULT='quiet'  # was debugging DMAR faults" in text
    assert 'GRUB_CMDLINE_LINUX="console=ttyS0,115200n8 intel_iommu=on iommu=pt"' in text
    assert "intel_iommu=off" not in text and cmdline_problems(cmdline.params(line), intel) == []


def test_proxmox_duplicates_are_left_alone_and_nothing_is_added_twice(intel):
    new, line = fixed([("/etc/default/grub", PROXMOX)], intel)
    assert 'GRUB_CMDLINE_LINUX="intel_iommu=on"' in new["/etc/default/grub"]
    assert line.split().count("iommu=pt") == 2 and line.split().count("intel_iommu=on") == 1


def test_rhel_bls_file_is_edited_for_new_kernels(intel):
    new, line = fixed([("/etc/default/grub", RHEL)], intel)
    assert line.endswith("rhgb quiet intel_iommu=on iommu=pt")
    assert 'GRUB_DISTRIBUTOR="$(sed ' in new["/etc/default/grub"]


def test_dropin_reference_keeps_the_reference_and_loses_the_acs_override(intel):
    files = [("/etc/default/grub", UBUNTU), ("/etc/default/grub.d/50-passthrough.cfg", DROPIN)]
    new, line = fixed(files, intel)
    assert new["/etc/default/grub.d/50-passthrough.cfg"] == 'GRUB_CMDLINE_LINUX="$GRUB_CMDLINE_LINUX intel_iommu=on iommu=pt"\n'
    assert "/etc/default/grub" not in new  # the drop-in is read last: the arguments go there
    assert "pcie_acs_override" not in line and cmdline_problems(cmdline.params(line), intel) == []


def test_forbidden_argument_is_removed(intel):
    files = [("/etc/default/grub", UBUNTU.replace('"quiet splash"', '"quiet nomodeset intel_iommu=on iommu=pt"'))]
    new, line = fixed(files, intel)
    assert 'GRUB_CMDLINE_LINUX_DEFAULT="quiet intel_iommu=on iommu=pt"' in new["/etc/default/grub"]


def test_compliant_file_is_not_touched(intel):
    files = [("/etc/default/grub", UBUNTU.replace('"quiet splash"', '"quiet intel_iommu=on iommu=pt"'))]
    assert fixed(files, intel)[0] == {}


def test_unbalanced_quote_is_refused(intel):
    with pytest.raises(ValueError):
        bootconfig.edit_grub([("/etc/default/grub", 'GRUB_CMDLINE_LINUX="quiet\n')], bootconfig.Edit(("x=1",), ()))


def test_systemd_boot_kernel_cmdline(intel):
    text = "root=UUID=6a1c-77 rw quiet intel_iommu=off\n"
    edit = bootconfig.needed(cmdline.params(text), intel)
    assert bootconfig.edit_kernel_cmdline(text, edit) == "root=UUID=6a1c-77 rw quiet intel_iommu=on iommu=pt\n"


def test_amd_invalid_option_is_removed_and_nothing_added(dl360):
    amd = replace(dl360, cpu_vendor="amd", cmdline_require=[])
    edit = bootconfig.needed(cmdline.params("quiet amd_iommu=on iommu=off"), amd)
    assert edit.add == () and set(edit.remove) == {"amd_iommu", "iommu=off"}
    assert bootconfig.edit_words("quiet amd_iommu=on iommu=off", edit.add, edit.remove) == "quiet"
