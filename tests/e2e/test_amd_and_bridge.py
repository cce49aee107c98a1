"""AMD-Vi rules on an AMD guest, and a group shared behind a PCIe-to-PCI bridge."""

from tests.e2e.audit_run import QEMU_NVME_ID, audit, ssh_args, write_profile


def test_amd_guest_reports_amd_iommu_on_as_invalid(boot_guest, tmp_path):
    g = boot_guest("e2e-amd", fresh=True, iommu="amd", cmdline_extra="amd_iommu=on iommu=pt", nvme=1)
    try:
        devices = [{"name": "ceph-nvme-1", "address": g.nvme_addresses[0], "id": QEMU_NVME_ID, "vm": "z-ceph-1"}]
        run = audit(tmp_path, write_profile(tmp_path / "amd.yaml", cpu_vendor="amd", devices=devices), *ssh_args(g))
    finally:
        g.close()
    cmd = "test_cmdline_iommu[e2e-amd]"
    assert run.outcome(cmd) == "failed"
    assert "amd_iommu=on is not a valid option (the AMD IOMMU is on by default; remove it)" in run.messages[cmd]
    for passing in ("test_firmware_iommu[e2e-amd]", "test_iommu_active[e2e-amd]", "test_interrupt_remapping[e2e-amd]",
                    "test_iommu_group_clean[e2e-amd-ceph-nvme-1]"):
        assert run.outcome(passing) == "passed", run.messages.get(passing)
    assert "IVRS" in run.output or run.outcome("test_firmware_iommu[e2e-amd]") == "passed"


def test_bridge_group_is_clean_only_when_every_endpoint_is_on_vfio(boot_guest, tmp_path):
    g = boot_guest("e2e-bridge", fresh=True, iommu="intel", cmdline_extra="intel_iommu=on", nvme=0, bridge_nvme=2)
    try:
        first, second = g.bridge_nvme_addresses
        devices = [{"name": "ceph-nvme-1", "address": first, "id": QEMU_NVME_ID, "vm": "z-ceph-1"}]
        profile = write_profile(tmp_path / "bridge.yaml", devices=devices)
        g.bind_vfio(first)
        before = audit(tmp_path, profile, *ssh_args(g))
        g.bind_vfio(second)
        after = audit(tmp_path, profile, *ssh_args(g))
    finally:
        g.close()
    test = "test_iommu_group_clean[e2e-bridge-ceph-nvme-1]"
    assert before.outcome(test) == "failed"
    assert f"{second} [{QEMU_NVME_ID}] NVMe controller, driver nvme" in before.messages[test]
    assert g.bridge_address in before.messages[test]  # the group listing names the bridge too
    assert after.outcome(test) == "passed", after.messages.get(test)
