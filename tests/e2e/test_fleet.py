"""Two hosts at once through --hosts: every result is attributed to its host."""

from tests.e2e.audit_run import QEMU_NVME_ID, audit, ssh_args, write_profile


def test_fleet_one_compliant_one_not(boot_guest, tmp_path):
    good = boot_guest("e2e-fleet-a", fresh=True, iommu="intel", cmdline_extra="intel_iommu=on", nvme=1)
    bad = boot_guest("e2e-fleet-b", fresh=True, iommu="intel", cmdline_extra="intel_iommu=off", nvme=1)
    try:
        good.bind_vfio(good.nvme_addresses[0])
        devices = [{"name": "ceph-nvme-1", "address": good.nvme_addresses[0], "id": QEMU_NVME_ID, "vm": "z-ceph-1"}]
        run = audit(tmp_path, write_profile(tmp_path / "fleet.yaml", devices=devices), *ssh_args(good, bad))
    finally:
        good.close()
        bad.close()
    assert run.rc == 1
    assert run.outcome("test_cmdline_iommu[e2e-fleet-a]") == "passed"
    assert run.outcome("test_iommu_active[e2e-fleet-a]") == "passed"
    assert run.outcome("test_bound_to_vfio[e2e-fleet-a-ceph-nvme-1]") == "passed"
    assert run.outcome("test_cmdline_iommu[e2e-fleet-b]") == "failed"
    assert run.outcome("test_iommu_active[e2e-fleet-b]") == "failed"
    assert run.outcome("test_bound_to_vfio[e2e-fleet-b-ceph-nvme-1]") == "failed"
    assert "e2e-fleet-b" in run.messages["test_iommu_active[e2e-fleet-b]"]
