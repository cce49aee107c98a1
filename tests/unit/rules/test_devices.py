from dataclasses import replace

from iommu_audit.rules import devices

NVME1, NVME4 = "0000:06:00.0", "0000:09:00.0"



# --- device-present ------------------------------------------------------------

def test_present_with_expected_id(host, dl360):
    v = devices.device_present(host.facts(), dl360.device_named("ceph-nvme-1"), dl360)
    assert v.ok and "[144d:a808] NVMe controller, driver vfio-pci" in v.found


def test_missing_device_lists_where_the_model_is(host, dl360):
    host.remove(f"sys/bus/pci/devices/{NVME1}")
    v = devices.device_present(host.facts(), dl360.device_named("ceph-nvme-1"), dl360)
    assert not v.ok and "no device at address 0000:06:00.0" in v.found and "0000:07:00.0" in v.found


def test_wrong_model_at_the_address(host, dl360):
    host.write(f"sys/bus/pci/devices/{NVME1}/device", "0xa809\n")
    v = devices.device_present(host.facts(), dl360.device_named("ceph-nvme-1"), dl360)
    assert not v.ok and "[144d:a809]" in v.found and "[144d:a808]" in v.expected


def test_serial_verifies_the_drive(host, dl360):
    f = host.facts()
    assert devices.device_present(f, replace(dl360.device_named("host-nvme-4"), serial="S4EWNX0R712345F"), dl360).ok
    swapped = replace(dl360.device_named("host-nvme-4"), serial="S4EWNX0R799999X")
    v = devices.device_present(f, swapped, dl360)
    assert not v.ok and "serial S4EWNX0R712345F" in v.found


def test_serial_unreadable_on_vfio_is_noted_not_failed(host, dl360):
    v = devices.device_present(host.facts(), replace(dl360.device_named("ceph-nvme-1"), serial="S4EWNX0R700001A"), dl360)
    assert v.ok and "serial not readable while on driver vfio-pci" in v.evidence


def test_one_function_under_two_entries_fails_both(host, dl360):
    host.write("sys/bus/pci/slots/4/address", "0000:05:08\n")  # the downstream port of 06:00.0
    by_slot = replace(dl360.device_named("ceph-nvme-2"), name="ceph-nvme-x", address=None, slot="4", vm="z-ceph-2")
    twice = replace(dl360, devices=[*dl360.devices, by_slot])
    f = host.facts()
    assert devices.locate(f, by_slot) == NVME1
    v = devices.device_present(f, dl360.device_named("ceph-nvme-1"), twice)
    assert not v.ok and "also the profile's ceph-nvme-x (slot 4)" in v.found
    v = devices.device_present(f, by_slot, twice)
    assert not v.ok and "also the profile's ceph-nvme-1 (address 0000:06:00.0)" in v.found
    assert devices.device_present(f, dl360.device_named("ceph-nvme-1"), dl360).ok


def test_slot_locates_one_device_and_refuses_to_guess_among_several(host, dl360):
    host.write("sys/bus/pci/slots/2/address", "0000:03:00\n")  # the Smart Array's slot
    f = host.facts()
    raid = replace(dl360.device_named("ceph-nvme-1"), address=None, slot="2", id="103c:3239")
    assert devices.locate(f, raid) == "0000:03:00.0" and devices.device_present(f, raid, dl360).ok
    # Slot 1 holds the M.2 card: four [144d:a808] behind its switch. A slot alone cannot say which.
    by_slot = replace(dl360.device_named("ceph-nvme-1"), address=None, slot="1")
    assert devices.locate(f, by_slot) is None
    v = devices.device_present(f, by_slot, dl360)
    assert not v.ok and "slot 1 holds several [144d:a808]: 0000:06:00.0, 0000:07:00.0, 0000:08:00.0, 0000:09:00.0" in v.found
    # With an address, the slot is verified, also behind the switch.
    assert devices.device_present(f, replace(dl360.device_named("ceph-nvme-3"), slot="1"), dl360).ok
    v = devices.device_present(f, replace(dl360.device_named("ceph-nvme-1"), slot="2"), dl360)
    assert not v.ok and "not in slot 2" in v.found


# --- device-not-used-by-host ---------------------------------------------------

def test_vfio_device_is_unused(host, dl360):
    assert devices.device_not_used_by_host(host.facts(), dl360.device_named("ceph-nvme-1")).ok


def test_the_hosts_system_nvme_is_in_use(host, dl360):
    # Profile mistake: the host's own system NVMe listed for a VM.
    wrong = replace(dl360.device_named("ceph-nvme-1"), address=NVME4)
    v = devices.device_not_used_by_host(host.facts(), wrong)
    assert not v.ok
    assert "/dev/nvme0n1p2 is mounted on /boot" in v.found and "/dev/nvme0n1p3 is held by dm-0, dm-1" in v.found


def test_nic_with_default_route_or_ssh_session_is_in_use(host, dl360):
    nic = replace(dl360.device_named("ceph-nvme-1"), address="0000:02:00.0", id="14e4:1657")
    f = host.facts()
    assert "eno1 carries the default route" in devices.device_not_used_by_host(f, nic).found
    f.ssh_connection = "192.0.2.50 51234 192.0.2.10 22"
    f.network.addresses["eno1"] = ["192.0.2.10"]
    assert "eno1 carries SSH sessions to 192.0.2.10" in devices.device_not_used_by_host(f, nic).found


def test_nic_under_a_bridge_carrying_the_route_and_ssh_is_in_use(host, dl360):
    # Proxmox-style: eno1 is a port of vmbr0, which holds the address and the default route.
    # The SSH session is found from /proc/net/tcp even when sudo dropped SSH_CONNECTION.
    host.write("proc/net/route", host.read("proc/net/route").replace("eno1\t", "vmbr0\t"))
    eno1 = host.path("sys/class/net/eno1").resolve()
    bridge = host.path("sys/devices/virtual/net/vmbr0")
    (bridge / "brif").mkdir(parents=True)
    host.path("sys/class/net/vmbr0").symlink_to("../../devices/virtual/net/vmbr0")
    (eno1 / "master").symlink_to("../../../../../../../virtual/net/vmbr0")
    (eno1 / "upper_vmbr0").symlink_to("../../../../../../../virtual/net/vmbr0")
    # 192.0.2.10:22 <- 192.0.2.50:51234, ESTABLISHED (st 01), as /proc/net/tcp prints it
    host.write("proc/net/tcp", "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"
               "   0: 0A0200C0:0016 320200C0:C822 01 00000000:00000000 02:000A7B2C 00000000     0        0 48213 4 0\n")
    nic = replace(dl360.device_named("ceph-nvme-1"), address="0000:02:00.0", id="14e4:1657")
    f = host.facts()
    f.network.addresses["vmbr0"] = ["192.0.2.10"]  # from `ip -o addr`, live hosts only
    v = devices.device_not_used_by_host(f, nic)
    assert not v.ok
    assert "eno1 carries the default route through vmbr0" in v.found
    assert "eno1 carries SSH sessions to 192.0.2.10 through vmbr0" in v.found


def test_host_nvme_in_fstab_by_uuid_and_lvm_signature(host, dl360):
    # The host's system NVMe: fstab names its partitions by UUID, udev sees the LVM PV.
    wrong = replace(dl360.device_named("ceph-nvme-1"), address=NVME4)
    v = devices.device_not_used_by_host(host.facts(), wrong)
    assert "/etc/fstab lists /dev/disk/by-uuid/7C1E-9A2B (/boot/efi)" in v.found
    assert any("LVM physical volume signature" in n for n in v.evidence)


def test_missing_device_is_not_applicable(host, dl360):
    host.remove(f"sys/bus/pci/devices/{NVME1}")
    v = devices.device_not_used_by_host(host.facts(), dl360.device_named("ceph-nvme-1"))
    assert v.skip and "device-present" in v.skip


# --- iommu-group-clean ---------------------------------------------------------

def test_own_group_is_clean(host, dl360):
    v = devices.iommu_group_clean(host.facts(), dl360.device_named("ceph-nvme-1"), dl360)
    assert v.ok and "group 14 is clean (1 member(s))" in v.found


def test_group_shared_with_a_host_endpoint_is_not_clean(host, dl360):
    # No ACS on the switch: the host's NVMe lands in the Ceph drive's group.
    host.move_to_group(NVME4, "14")
    v = devices.iommu_group_clean(host.facts(), dl360.device_named("ceph-nvme-1"), dl360)
    assert not v.ok and "0000:09:00.0 [144d:a808] NVMe controller, driver nvme" in v.found
    assert "pcie_acs_override" in v.fix


def test_bridges_unbound_and_vfio_members_are_viable(host, dl360):
    host.move_to_group("0000:05:08.0", "14")  # a pcieport bridge
    host.move_to_group("0000:01:00.0", "14")  # an endpoint with no driver
    assert devices.iommu_group_clean(host.facts(), dl360.device_named("ceph-nvme-1"), dl360).ok
    host.move_to_group("0000:01:00.2", "14").bind("0000:01:00.2", "pci-stub")
    assert devices.iommu_group_clean(host.facts(), dl360.device_named("ceph-nvme-1"), dl360).ok


def test_group_split_across_two_vms(host, dl360):
    host.move_to_group("0000:07:00.0", "14")
    v = devices.iommu_group_clean(host.facts(), dl360.device_named("ceph-nvme-1"), dl360)
    assert not v.ok and "goes to VM z-ceph-2" in v.found


HOSTDEV_0100_2 = """    <hostdev mode='subsystem' type='pci' managed='yes'>
      <source>
        <address domain='0x0000' bus='0x01' slot='0x00' function='0x2'/>
      </source>
    </hostdev>
"""


def test_group_member_in_another_vm_splits_the_group(host, dl360):
    # 01:00.2 is in no profile entry; on vfio-pci it looks viable, but z-gluster-1 holds it.
    host.move_to_group("0000:01:00.2", "14").bind("0000:01:00.2", "vfio-pci")
    assert devices.iommu_group_clean(host.facts(), dl360.device_named("ceph-nvme-1"), dl360).ok
    host.replace("etc/libvirt/qemu/z-gluster-1.xml", "    <interface type='bridge'>", HOSTDEV_0100_2 + "    <interface type='bridge'>")
    v = devices.iommu_group_clean(host.facts(), dl360.device_named("ceph-nvme-1"), dl360)
    assert not v.ok and "is a <hostdev> of VM z-gluster-1" in v.found and "one VM only" in v.found
    # In the device's own VM it is the viable case.
    host.replace("etc/libvirt/qemu/z-gluster-1.xml", HOSTDEV_0100_2, "")
    host.replace("etc/libvirt/qemu/z-ceph-1.xml", "    <interface type='bridge'>", HOSTDEV_0100_2 + "    <interface type='bridge'>")
    assert devices.iommu_group_clean(host.facts(), dl360.device_named("ceph-nvme-1"), dl360).ok


def test_both_profiled_devices_of_a_split_group_fail(host, dl360):
    host.move_to_group("0000:07:00.0", "14")
    f = host.facts()
    v1 = devices.iommu_group_clean(f, dl360.device_named("ceph-nvme-1"), dl360)
    v2 = devices.iommu_group_clean(f, dl360.device_named("ceph-nvme-2"), dl360)
    assert not v1.ok and "z-ceph-2" in v1.found and not v2.ok and "z-ceph-1" in v2.found


def test_group_member_on_vfio_with_unreadable_definitions_fails(host, dl360):
    host.move_to_group("0000:01:00.2", "14").bind("0000:01:00.2", "vfio-pci")
    host.write("etc/libvirt/qemu/z-gluster-2.xml", "<domain")
    v = devices.iommu_group_clean(host.facts(), dl360.device_named("ceph-nvme-1"), dl360)
    assert not v.ok and "could not be read" in v.found


def test_profile_index_is_built_once_per_host(host, dl360, monkeypatch):
    f = host.facts()
    calls = []
    real = devices.locate
    monkeypatch.setattr(devices, "locate", lambda facts, d: calls.append(d) or real(facts, d))
    for d in dl360.passthrough_devices:
        devices.iommu_group_clean(f, d, dl360)
    assert len(calls) == len(dl360.passthrough_devices) + len(dl360.devices)


def test_no_group_at_all(host, dl360):
    host.remove(f"sys/bus/pci/devices/{NVME1}/iommu_group")
    v = devices.iommu_group_clean(host.facts(), dl360.device_named("ceph-nvme-1"), dl360)
    assert not v.ok and "in no IOMMU group" in v.found


# --- bound-to-vfio / vfio-binding-persistent ------------------------------------

def test_bound_and_unbound(host, dl360):
    assert devices.bound_to_vfio(host.facts(), dl360.device_named("ceph-nvme-1")).ok
    host.bind(NVME1, "nvme")
    v = devices.bound_to_vfio(host.facts(), dl360.device_named("ceph-nvme-1"))
    assert not v.ok and "bound to nvme" in v.found and "driverctl set-override 0000:06:00.0 vfio-pci" in v.fix


def test_persistent_by_driverctl(host, dl360):
    v = devices.vfio_binding_persistent(host.facts(), dl360.device_named("ceph-nvme-1"))
    assert v.ok and "/etc/driverctl.d/pci-0000:06:00.0 (applied at boot by driverctl's " \
        "/lib/udev/rules.d/05-driverctl.rules and /lib/systemd/system/driverctl@.service)" in v.found


def _unmanaged(host):
    host.replace("etc/libvirt/qemu/z-ceph-1.xml", "managed='yes'", "managed='no'")
    return host


def test_driverctl_file_without_its_udev_rule_is_not_persistent(host, dl360):
    _unmanaged(host).remove("lib/udev/rules.d/05-driverctl.rules")
    v = devices.vfio_binding_persistent(host.facts(), dl360.device_named("ceph-nvme-1"))
    assert not v.ok
    assert "/etc/driverctl.d/pci-0000:06:00.0 says vfio-pci, but nothing applies it at boot" in v.found
    assert "05-driverctl.rules is in none of /etc, /run, /usr/local/lib, /usr/lib, /lib" in v.found
    assert "install driverctl" in v.fix and "fixes/vfio-binding-persistent.sh 0000:06:00.0" in v.fix


def test_driverctl_rule_masked_in_etc_is_not_persistent(host, dl360):
    _unmanaged(host).path("etc/udev/rules.d").mkdir(parents=True)
    host.path("etc/udev/rules.d/05-driverctl.rules").symlink_to("/dev/null")
    v = devices.vfio_binding_persistent(host.facts(), dl360.device_named("ceph-nvme-1"))
    assert not v.ok and "/etc/udev/rules.d/05-driverctl.rules masks it (a link to /dev/null)" in v.found


def test_driverctl_unit_masked_or_rule_emptied_is_not_persistent(host, dl360):
    _unmanaged(host).write("etc/systemd/system/driverctl@.service", "")  # systemctl mask writes a link; empty works too
    v = devices.vfio_binding_persistent(host.facts(), dl360.device_named("ceph-nvme-1"))
    assert not v.ok and "/etc/systemd/system/driverctl@.service masks it" in v.found
    host.remove("etc/systemd/system/driverctl@.service").write("etc/udev/rules.d/05-driverctl.rules", "# off\n")
    assert not devices.vfio_binding_persistent(host.facts(), dl360.device_named("ceph-nvme-1")).ok


def test_our_own_rule_applies_driverctl_files_without_driverctl(host, dl360):
    _unmanaged(host).remove("lib/udev/rules.d/05-driverctl.rules").remove("lib/systemd/system/driverctl@.service")
    host.write("etc/udev/rules.d/89-iommu-audit-vfio.rules",
               'ACTION=="add", SUBSYSTEM=="pci", TEST=="/etc/driverctl.d/pci-$kernel", RESULT=="vfio-pci"\n')
    v = devices.vfio_binding_persistent(host.facts(), dl360.device_named("ceph-nvme-1"))
    assert v.ok and "(applied at boot by /etc/udev/rules.d/89-iommu-audit-vfio.rules)" in v.found


def test_unapplied_driverctl_file_is_noted_when_libvirt_binds(host, dl360):
    host.remove("lib/udev/rules.d/05-driverctl.rules")
    v = devices.vfio_binding_persistent(host.facts(), dl360.device_named("ceph-nvme-1"))
    assert v.ok and "managed='yes' in VM z-ceph-1" in v.found
    assert any("nothing applies it at boot" in e for e in v.evidence)


def test_binding_made_by_hand_is_not_persistent(host, dl360):
    host.remove(f"etc/driverctl.d/pci-{NVME1}")
    host.replace("etc/libvirt/qemu/z-ceph-1.xml", "managed='yes'", "managed='no'")
    v = devices.vfio_binding_persistent(host.facts(), dl360.device_named("ceph-nvme-1"))
    assert not v.ok and "driver_override=vfio-pci is set now, but lost at reboot" in v.found


def test_libvirt_managed_counts_as_persistent(host, dl360):
    host.remove(f"etc/driverctl.d/pci-{NVME1}")
    v = devices.vfio_binding_persistent(host.facts(), dl360.device_named("ceph-nvme-1"))
    assert v.ok and "managed='yes' in VM z-ceph-1" in v.found


def test_ids_in_boot_config_count_as_persistent(host, dl360):
    host.remove(f"etc/driverctl.d/pci-{NVME1}")
    host.replace("etc/libvirt/qemu/z-ceph-1.xml", "managed='yes'", "managed='no'")
    host.replace("etc/default/grub", 'iommu=pt"', 'iommu=pt vfio-pci.ids=144d:a808"')
    # Edited but not regenerated: the next boot does not have it yet.
    assert not devices.vfio_binding_persistent(host.facts(), dl360.device_named("ceph-nvme-1")).ok
    host.replace("boot/grub/grub.cfg", "iommu=pt\n", "iommu=pt vfio-pci.ids=144d:a808\n")
    v = devices.vfio_binding_persistent(host.facts(), dl360.device_named("ceph-nvme-1"))
    assert v.ok and "vfio-pci.ids=144d:a808 in /boot/grub/grub.cfg" in v.found


# --- host-device-kept ----------------------------------------------------------

def test_host_nvme_stays_with_the_host(host, dl360):
    v = devices.host_device_kept(host.facts(), dl360.device_named("host-nvme-4"))
    assert v.ok and "driver nvme" in v.found


def test_host_nvme_taken_by_vfio_or_a_vm_fails(host, dl360):
    host.bind(NVME4, "vfio-pci").write(f"etc/driverctl.d/pci-{NVME4}", "vfio-pci\n")
    host.replace("etc/libvirt/qemu/z-ceph-3.xml", "bus='0x08' slot='0x00'", "bus='0x09' slot='0x00'")
    v = devices.host_device_kept(host.facts(), dl360.device_named("host-nvme-4"))
    assert not v.ok
    assert "bound to vfio-pci" in v.found and "driverctl override" in v.found and "passed to VM z-ceph-3" in v.found


def test_modprobe_ids_are_ignored_when_vfio_pci_is_built_in(host, dl360):
    # Ubuntu builds vfio_pci into the kernel (modules.builtin): modprobe.d options never reach it.
    host.remove(f"etc/driverctl.d/pci-{NVME1}")
    host.replace("etc/libvirt/qemu/z-ceph-1.xml", "managed='yes'", "managed='no'")
    host.write("etc/modprobe.d/vfio.conf", "options vfio-pci ids=144d:a808\n")
    v = devices.vfio_binding_persistent(host.facts(), dl360.device_named("ceph-nvme-1"))
    assert not v.ok and "is ignored: vfio_pci is built into this kernel" in v.found
    # The same line works where vfio_pci is a module.
    host.write("lib/modules/5.15.0-91-generic/modules.builtin", "kernel/drivers/vfio/vfio.ko\n")
    v = devices.vfio_binding_persistent(host.facts(), dl360.device_named("ceph-nvme-1"))
    assert v.ok and "vfio-pci.ids=144d:a808 in /etc/modprobe.d/vfio.conf" in v.found


def test_persistence_notes_for_libvirt_only_and_modprobe_without_softdep(host, dl360):
    host.remove(f"etc/driverctl.d/pci-{NVME1}")
    v = devices.vfio_binding_persistent(host.facts(), dl360.device_named("ceph-nvme-1"))
    assert v.ok and any("only libvirt binds it" in n for n in v.evidence)
    host.write("lib/modules/5.15.0-91-generic/modules.builtin", "kernel/drivers/vfio/vfio.ko\n")
    host.write("etc/modprobe.d/vfio.conf", "options vfio-pci ids=144d:a808\n")
    v = devices.vfio_binding_persistent(host.facts(), dl360.device_named("ceph-nvme-1"))
    assert v.ok and any("softdep <driver> pre: vfio-pci" in n for n in v.evidence)
    host.append("etc/modprobe.d/vfio.conf", "softdep nvme pre: vfio-pci\n")
    v = devices.vfio_binding_persistent(host.facts(), dl360.device_named("ceph-nvme-1"))
    assert v.ok and not any("softdep" in n for n in v.evidence)
