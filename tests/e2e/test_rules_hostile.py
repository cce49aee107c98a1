"""A group split across two VMs (real libvirt definitions) and VFIO blacklisted for the next boot.

One Intel guest with two NVMe drives behind a PCIe-to-PCI bridge: both share one IOMMU
group and are bound to vfio-pci. The private libvirtd writes real definitions (define,
attach-device --config, dumpxml --inactive) that are copied into the guest's
/etc/libvirt/qemu, as on a host whose libvirt daemon is not running. The audit runs over SSH.
"""

import shlex

import pytest

from tests.e2e.audit_run import QEMU_NVME_ID, audit, put_file, ssh_args, write_profile

VMS = ("z-split-1", "z-split-2")
BLACKLIST = "/etc/modprobe.d/blacklist-vfio.conf"


@pytest.fixture
def split_vms(libvirtd_server):
    for vm in VMS:
        libvirtd_server.virsh("undefine", vm, check=False)
        libvirtd_server.define_domain(vm)
    yield libvirtd_server
    for vm in VMS:
        libvirtd_server.undefine(vm)


def copy_definitions(g, server) -> None:
    g.run("mkdir -p /etc/libvirt/qemu", check=True)
    for vm in VMS:
        put_file(g, f"/etc/libvirt/qemu/{vm}.xml", server.dumpxml(vm))


def test_group_split_across_vms_and_blacklisted_vfio_fail(boot_guest, split_vms, tmp_path):
    g = boot_guest("e2e-split", fresh=True, iommu="intel", cmdline_extra="intel_iommu=on no_timer_check",
                   nvme=0, bridge_nvme=2)
    try:
        first, second = g.bridge_nvme_addresses
        for addr in (first, second):
            g.bind_vfio(addr)
        g.run("modprobe vfio_iommu_type1", check=True)
        profile = write_profile(tmp_path / "split.yaml", devices=[
            {"name": "nvme-a", "address": first, "id": QEMU_NVME_ID, "vm": "z-split-1"}])
        # The second drive is in no profile entry, but on vfio-pci and in another VM's definition.
        split_vms.attach_hostdev("z-split-1", first)
        split_vms.attach_hostdev("z-split-2", second)
        copy_definitions(g, split_vms)
        put_file(g, BLACKLIST, "blacklist vfio_pci\n")
        broken = audit(tmp_path, profile, *ssh_args(g), "-k", "iommu_group_clean or vfio_modules")
        # Both directions in one boot: the whole group in one VM, nothing blacklisted.
        split_vms.detach_hostdev("z-split-2", second)
        split_vms.attach_hostdev("z-split-1", second)
        copy_definitions(g, split_vms)
        g.run(f"rm -f {shlex.quote(BLACKLIST)}", check=True)
        fixed = audit(tmp_path, profile, *ssh_args(g), "-k", "iommu_group_clean or vfio_modules")
    finally:
        g.close()
    group, modules = "test_iommu_group_clean[e2e-split-nvme-a]", "test_vfio_modules[e2e-split]"
    assert broken.rc == 1, broken.output
    assert broken.outcome(group) == "failed"
    assert f"{second} [{QEMU_NVME_ID}] NVMe controller, driver vfio-pci is a <hostdev> of VM z-split-2" \
        in broken.messages[group]
    assert broken.outcome(modules) == "failed"
    assert f"loaded now, but VFIO will not load at boot: 'blacklist vfio_pci' in {BLACKLIST}" in broken.messages[modules]
    assert fixed.outcome(group) == "passed", fixed.messages.get(group)
    assert fixed.outcome(modules) == "passed", fixed.messages.get(modules)
    assert fixed.rc == 0, fixed.output
