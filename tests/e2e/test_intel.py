"""Intel VT-d guests: compliant after setup, and the three ways the IOMMU is not on."""

import shlex

import pytest

from iommu_audit import gather
from tests.e2e.audit_run import QEMU_NVME_ID, audit, put_file, put_vfio_override, ssh_args, write_profile
from tests.e2e.harness.qemu import by_id_path
from tests.unit.test_probe_batched import REFERENCE, batched_facts, per_file_facts

HOST_CHECKS = ["test_firmware_iommu", "test_cmdline_iommu", "test_iommu_active", "test_interrupt_remapping"]


def ceph_devices(guest, n=3):
    return [{"name": f"ceph-nvme-{i + 1}", "address": a, "id": QEMU_NVME_ID, "vm": f"z-ceph-{i + 1}"}
            for i, a in enumerate(guest.nvme_addresses[:n])]


@pytest.fixture(scope="module")
def compliant(boot_guest, libvirtd_server):
    """4 NVMe: three bound to vfio-pci for z-ceph-1..3, the fourth passed whole to z-gluster-1.

    Set up the way an admin does it: driverctl-style overrides, the boot config, and VM
    definitions written by a real libvirtd (virsh define / attach-device --config / dumpxml).
    """
    g = boot_guest("e2e-intel", iommu="intel", cmdline_extra="intel_iommu=on", nvme=4, mounted_nvme=3)
    disk = by_id_path(g.nvme_serials[3])
    for i, addr in enumerate(g.nvme_addresses[:3]):
        g.bind_vfio(addr)
        put_vfio_override(g, addr)
        vm = f"z-ceph-{i + 1}"
        libvirtd_server.define_domain(vm)
        libvirtd_server.attach_hostdev(vm, addr)
        put_file(g, f"/etc/libvirt/qemu/{vm}.xml", libvirtd_server.dumpxml(vm))
    libvirtd_server.define_domain("z-gluster-1")
    libvirtd_server.attach_disk("z-gluster-1", disk)
    put_file(g, "/etc/libvirt/qemu/z-gluster-1.xml", libvirtd_server.dumpxml("z-gluster-1"))
    put_file(g, "/etc/default/grub", 'GRUB_DEFAULT=0\nGRUB_CMDLINE_LINUX_DEFAULT="intel_iommu=on"\nGRUB_CMDLINE_LINUX=""\n')
    return g


def compliant_profile(tmp_path, g, extra_devices=()):
    disk = {"name": "gluster-disk-1", "by_id": by_id_path(g.nvme_serials[3]).rsplit("/", 1)[1], "vm": "z-gluster-1"}
    return write_profile(tmp_path / "e2e-intel.yaml", devices=[*ceph_devices(g), *extra_devices], disks=[disk])


def test_compliant_guest_passes_every_required_check(compliant, tmp_path):
    run = audit(tmp_path, compliant_profile(tmp_path, compliant), *ssh_args(compliant))
    assert run.rc == 0, run.output
    assert run.failed() == set()
    assert run.outcome("test_bound_to_vfio[e2e-intel-ceph-nvme-1]") == "passed"
    assert run.outcome("test_iommu_group_clean[e2e-intel-ceph-nvme-3]") == "passed"
    assert run.outcome("test_disk_assigned_to_vm[e2e-intel-gluster-disk-1]") == "passed"
    assert run.outcome("test_interrupt_remapping[e2e-intel]") == "passed"
    assert len(run.outcomes) >= 30


def test_batched_probe_reads_what_one_process_per_file_read(compliant):
    # A live kernel's sysfs (vfio-bound and nvme-bound NVMe, groups, block devices, NICs), read by the
    # packed probe as sent to every host and by the per-file reference.
    rc, out, err = compliant.run(f"sh -c {shlex.quote(gather.COMMAND)} probe / M 60", timeout=120)
    assert rc == 0, err
    put_file(compliant, "/tmp/probe_per_file.sh", REFERENCE.read_text())
    rc, ref, err = compliant.run("sh /tmp/probe_per_file.sh / M", timeout=120)
    assert rc == 0, err
    got, want = batched_facts(out), per_file_facts(ref)
    assert len(got["pci"]) > 4 and got["nvme"] and got["block"] and got["groups"]
    assert {k: v for k, v in got.items() if k != "node_cpus"} == {k: v for k, v in want.items() if k != "node_cpus"}


def test_device_back_on_nvme_fails_bound_to_vfio(compliant, tmp_path):
    addr = compliant.nvme_addresses[2]
    assert compliant.unbind_vfio(addr) == "nvme"
    try:
        run = audit(tmp_path, compliant_profile(tmp_path, compliant), *ssh_args(compliant))
    finally:
        compliant.bind_vfio(addr)
    assert run.rc == 1
    assert run.failed() == {"test_bound_to_vfio[e2e-intel-ceph-nvme-3]"}
    assert f"{addr} is bound to nvme" in run.messages["test_bound_to_vfio[e2e-intel-ceph-nvme-3]"]


def test_mounted_device_is_identified_as_in_use(compliant, tmp_path):
    # The host mounts the drive meant for z-gluster-1 (ext4, made on the image before boot):
    # both the disk view and the PCI view must call it in use.
    dev = compliant.run(f"readlink -f {by_id_path(compliant.nvme_serials[3])}", check=True)[1].strip()
    compliant.run(f"mkdir -p /srv/data && mount -t ext4 {dev} /srv/data", check=True)
    try:
        data = {"name": "data-nvme", "address": compliant.nvme_addresses[3], "id": QEMU_NVME_ID, "vm": "z-data"}
        run = audit(tmp_path, compliant_profile(tmp_path, compliant, [data]), *ssh_args(compliant))
    finally:
        compliant.run("umount /srv/data")
    disk_test, pci_test = "test_disk_not_used_by_host[e2e-intel-gluster-disk-1]", "test_device_not_used_by_host[e2e-intel-data-nvme]"
    assert run.outcome(disk_test) == "failed" and f"{dev} is mounted on /srv/data" in run.messages[disk_test]
    assert run.outcome(pci_test) == "failed" and f"{dev} is mounted on /srv/data" in run.messages[pci_test]


@pytest.mark.parametrize("name, iommu, cmdline, expect", [
    # Debian's kernel turns VT-d on by default: groups exist, but the profile's explicit argument is missing.
    ("e2e-intel-noarg", "intel", "", {"test_cmdline_iommu": ("failed", "intel_iommu=on is missing"),
                                      "test_iommu_active": ("passed", ""), "test_firmware_iommu": ("passed", "")}),
    ("e2e-intel-off", "intel", "intel_iommu=off", {
        "test_cmdline_iommu": ("failed", "intel_iommu=off disables Intel DMA remapping"),
        "test_iommu_active": ("failed", "0 IOMMU group(s)"), "test_firmware_iommu": ("passed", "")}),
    # VT-d off in firmware: no DMAR table; the kernel still prints "DMAR: IOMMU enabled".
    ("e2e-intel-noiommu", None, "intel_iommu=on", {
        "test_firmware_iommu": ("failed", "no ACPI DMAR table"),
        "test_iommu_active": ("failed", "the kernel log says the IOMMU was enabled, yet no group exists"),
        "test_cmdline_iommu": ("passed", "")}),
])
def test_iommu_not_on(boot_guest, tmp_path, name, iommu, cmdline, expect):
    g = boot_guest(name, fresh=True, iommu=iommu, cmdline_extra=cmdline, nvme=1)
    try:
        run = audit(tmp_path, write_profile(tmp_path / "p.yaml", devices=ceph_devices(g, 1)), *ssh_args(g))
    finally:
        g.close()
    assert run.rc == 1
    for test, (outcome, text) in expect.items():
        tid = f"{test}[{name}]"
        assert run.outcome(tid) == outcome, run.messages.get(tid)
        assert text in run.messages.get(tid, ""), run.messages.get(tid)


def test_real_reserved_regions_and_live_vfio_parameter(compliant, tmp_path):
    """The platform section meets the real kernel: every group's reserved_regions (emulated VT-d: the
    IOAPIC/MSI window, no RMRR) and the live allow_unsafe_interrupts parameter, read over SSH in one probe."""
    import testinfra

    from iommu_audit import gather
    from iommu_audit.parsers.platform import Region
    from iommu_audit.profile import Device
    from iommu_audit.rules import firmware, overrides

    host = testinfra.get_host(f"ssh://{compliant.name}", ssh_config=str(compliant.ssh_config_path))
    param = "/sys/module/vfio_iommu_type1/parameters/allow_unsafe_interrupts"
    assert compliant.run(f"cat {param}", check=True)[1].strip() == "N"
    compliant.run(f"echo Y > {param}", check=True)
    try:  # one probe under TCG is slow: read everything in one gather
        f = gather.parse(gather.gather(gather.Target(compliant.name, f"ssh://{compliant.name}", host=host)))
    finally:
        compliant.run(f"echo N > {param}", check=True)
    assert f.groups and set(f.platform.reserved) == set(f.groups)
    msi = Region(0xFEE00000, 0xFEEFFFFF, "msi")  # intel_iommu_get_resv_regions: IOAPIC_RANGE as IOMMU_RESV_MSI
    assert all(msi in regions and all(r.type != "direct" for r in regions) for regions in f.platform.reserved.values())
    nvme = Device("ceph-nvme-1", QEMU_NVME_ID, "z-ceph-1", address=compliant.nvme_addresses[0])
    v = firmware.no_rmrr_lockout(f, nvme)
    assert v.ok and "msi" in v.found and "reserved_regions" in v.evidence[0]
    v = overrides.no_unsafe_overrides(f, None)
    assert not v.ok and f"{param} = Y (active now)" in v.evidence
