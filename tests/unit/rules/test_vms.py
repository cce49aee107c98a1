from iommu_audit.rules import vms



def test_device_in_its_vm_only(host, dl360):
    v = vms.assigned_to_vm(host.facts(), dl360.device_named("ceph-nvme-1"))
    assert v.ok and "hostdev> of z-ceph-1 only" in v.found


def test_device_in_no_vm(host, dl360):
    for rel in ("etc/libvirt/qemu/z-ceph-1.xml", "run/libvirt/qemu/z-ceph-1.xml"):
        host.replace(rel, "bus='0x06' slot='0x00'", "bus='0x0a' slot='0x00'")
    v = vms.assigned_to_vm(host.facts(), dl360.device_named("ceph-nvme-1"))
    assert not v.ok and "z-ceph-1 has no <hostdev> for 0000:06:00.0" in v.found
    assert "virsh attach-device z-ceph-1" in v.fix


def test_device_in_two_vms(host, dl360):
    host.replace("etc/libvirt/qemu/z-ceph-2.xml", "bus='0x07' slot='0x00'", "bus='0x06' slot='0x00'")
    v = vms.assigned_to_vm(host.facts(), dl360.device_named("ceph-nvme-1"))
    assert not v.ok and "also defined in z-ceph-2" in v.found and "virsh detach-device z-ceph-2" in v.fix


def test_device_in_the_wrong_vm(host, dl360):
    v = vms.assigned_to_vm(host.facts(), dl360.device_named("ceph-nvme-2"))
    assert v.ok
    for rel in ("etc/libvirt/qemu/z-ceph-2.xml", "run/libvirt/qemu/z-ceph-2.xml"):
        host.replace(rel, "bus='0x07' slot='0x00'", "bus='0x0b' slot='0x00'")
    host.replace("etc/libvirt/qemu/z-ceph-3.xml", "</hostdev>", "</hostdev>\n" + """    <hostdev mode='subsystem' type='pci' managed='yes'>
      <source>
        <address domain='0x0000' bus='0x07' slot='0x00' function='0x0'/>
      </source>
    </hostdev>""", )
    v = vms.assigned_to_vm(host.facts(), dl360.device_named("ceph-nvme-2"))
    assert not v.ok and "z-ceph-2 has no <hostdev>" in v.found and "also defined in z-ceph-3" in v.found


def test_sriov_interface_hostdev_counts_as_an_assignment(host, dl360):
    host.replace("etc/libvirt/qemu/z-ceph-3.xml", "<interface type='bridge'>", """<interface type='hostdev' managed='yes'>
      <mac address='52:54:00:6d:90:02'/>
      <source>
        <address type='pci' domain='0x0000' bus='0x06' slot='0x00' function='0x0'/>
      </source>
    </interface>
    <interface type='bridge'>""")
    v = vms.assigned_to_vm(host.facts(), dl360.device_named("ceph-nvme-1"))
    assert not v.ok and "also defined in z-ceph-3" in v.found


def test_missing_vm_and_missing_libvirt(host, dl360):
    host.remove("etc/libvirt/qemu/z-ceph-1.xml")
    v = vms.assigned_to_vm(host.facts(), dl360.device_named("ceph-nvme-1"))
    assert not v.ok and "0000:06:00.0 only in the running VM's live definition" in v.found  # running, transient
    assert "virsh attach-device z-ceph-1 <hostdev-0000:06:00.0.xml> --config" in v.fix
    host.remove("run/libvirt/qemu/z-ceph-1.xml")
    v = vms.assigned_to_vm(host.facts(), dl360.device_named("ceph-nvme-1"))
    assert not v.ok and "no libvirt domain named z-ceph-1" in v.found and "z-gluster-1" in v.found
    host.remove("etc/libvirt").remove("run/libvirt")
    v = vms.assigned_to_vm(host.facts(), dl360.device_named("ceph-nvme-1"))
    assert not v.ok and "libvirt is not installed" in v.found


def test_virsh_error_is_a_failure_not_a_crash(host, dl360):
    f = host.facts()
    f.libvirt_source, f.libvirt_error, f.domains = "error", "error: failed to connect to the hypervisor", []
    v = vms.assigned_to_vm(f, dl360.device_named("ceph-nvme-1"))
    assert not v.ok and "failed to connect to the hypervisor" in v.found and "libvirtd" in v.fix


def test_an_unreadable_definition_blocks_the_verdict(host, dl360):
    # libvirt keeps definitions 0600: read as non-root without virsh, z-ceph-3 comes back empty.
    # It might hold this very device, so no VM check may pass.
    host.write("etc/libvirt/qemu/z-ceph-3.xml", "")
    v = vms.assigned_to_vm(host.facts(), dl360.device_named("ceph-nvme-2"))
    assert not v.ok and "cannot read the definition of z-ceph-3" in v.found and "--sudo" in v.fix


HOTPLUG_NVME1 = """    <hostdev mode='subsystem' type='pci' managed='yes'>
      <source>
        <address domain='0x0000' bus='0x06' slot='0x00' function='0x0'/>
      </source>
      <alias name='hostdev1'/>
    </hostdev>
"""


def test_device_hot_plugged_into_a_running_vm_is_seen_in_its_live_status(host, dl360):
    # Only z-ceph-3's live status holds ceph-nvme-1 (virsh attach-device --live); its definition does not.
    host.replace("run/libvirt/qemu/z-ceph-3.xml", "    <interface type='bridge'>", HOTPLUG_NVME1 + "    <interface type='bridge'>")
    f = host.facts()
    assert f.libvirt_source == "files"
    v = vms.assigned_to_vm(f, dl360.device_named("ceph-nvme-1"))
    assert not v.ok and "also defined in z-ceph-3" in v.found


def test_a_transient_vm_counts(host, dl360):
    text = host.read("run/libvirt/qemu/z-ceph-3.xml").replace("z-ceph-3", "z-scratch").replace("bus='0x08'", "bus='0x06'")
    host.write("run/libvirt/qemu/z-scratch.xml", text)
    v = vms.assigned_to_vm(host.facts(), dl360.device_named("ceph-nvme-1"))
    assert not v.ok and "also defined in z-scratch" in v.found


def test_a_disk_of_the_passed_controller_in_another_vm(host, dl360):
    # host-nvme-4's namespace is on 09:00.0; pretend the profile passes that controller.
    nvme4 = dl360.device_named("host-nvme-4")
    from dataclasses import replace
    passed = replace(nvme4, vm="z-ceph-3", host=None) if hasattr(nvme4, "host") else replace(nvme4, vm="z-ceph-3")
    host.replace("etc/libvirt/qemu/z-ceph-3.xml", "bus='0x08' slot='0x00'", "bus='0x09' slot='0x00'")
    assert vms.assigned_to_vm(host.facts(), passed).ok
    host.replace("etc/libvirt/qemu/z-gluster-1.xml", "<source file='/var/lib/libvirt/images/z-gluster-1.qcow2'/>",
                 "<source file='/dev/nvme0n1p3'/>")
    v = vms.assigned_to_vm(host.facts(), passed)
    assert not v.ok and "z-gluster-1 has /dev/nvme0n1p3, a disk on 0000:09:00.0" in v.found
    assert "virsh detach-disk z-gluster-1 /dev/nvme0n1p3 --config" in v.fix


def test_vm_names_are_quoted_in_fix_lines(host, dl360):
    from dataclasses import replace
    odd = replace(dl360.device_named("ceph-nvme-1"), vm="z; reboot")
    v = vms.assigned_to_vm(host.facts(), odd)
    assert not v.ok and "'z; reboot'" in v.fix and "define z; reboot" not in v.fix


def test_definitions_read_from_files_because_no_daemon_runs_is_said(host, dl360):
    from iommu_audit.facts import from_probe
    text = host.probe_output()
    assert "libvirt source=files daemon=none" in text
    f = from_probe("h", text.replace("libvirt source=files daemon=none", "libvirt source=files daemon=stopped"))
    v = vms.assigned_to_vm(f, dl360.device_named("ceph-nvme-1"))
    assert v.ok and any("no libvirt daemon runs" in e for e in v.evidence)


def test_a_device_hot_plugged_only_into_its_own_vm_fails(host, dl360):
    # virsh attach-device z-ceph-1 --live: the running VM has it, its persistent definition not.
    host.replace("etc/libvirt/qemu/z-ceph-1.xml", "bus='0x06' slot='0x00'", "bus='0x07' slot='0x00'")
    host.replace("run/libvirt/qemu/z-ceph-1.xml", "bus='0x06' slot='0x00'", "bus='0x07' slot='0x00'")
    host.replace("run/libvirt/qemu/z-ceph-1.xml", "    <interface type='bridge'>", HOTPLUG_NVME1 + "    <interface type='bridge'>")
    v = vms.assigned_to_vm(host.facts(), dl360.device_named("ceph-nvme-1"))
    assert not v.ok and v.found.startswith("z-ceph-1 has 0000:06:00.0 only in the running VM's live definition")
    assert "--config" in v.fix
