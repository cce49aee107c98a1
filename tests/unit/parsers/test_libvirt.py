"""Domain XML as `virsh dumpxml --inactive` prints it (tests/data/libvirt)."""

from pathlib import Path

from iommu_audit.parsers.libvirt import domain

DATA = Path(__file__).resolve().parents[2] / "data" / "libvirt"


def load(name: str, state: str = "defined"):
    return domain("vm", state, (DATA / name).read_text())


def test_managed_hostdev():
    d = load("vm-hostdev-managed.xml", "running")
    assert d.running and not d.error
    assert [(h.address, h.managed) for h in d.hostdevs] == [((0, 6, 0, 0), True), ((0, 7, 0, 0), True)]


def test_unmanaged_hostdev():
    assert [h.managed for h in load("vm-hostdev-unmanaged.xml").hostdevs] == [False]


def test_addresses_are_read_as_libvirt_reads_them():
    # strtoul base 0: "6" decimal, "0x06" hex, "16" is decimal sixteen (0x10), not 0x16.
    d = load("vm-hostdev-decimal-input.xml")
    assert [h.address for h in d.hostdevs] == [(0, 6, 0, 0), (0, 16, 0, 0)]
    octal = domain("o", "defined", "<domain><devices><hostdev mode='subsystem' type='pci'><source>"
                                   "<address domain='0' bus='010' slot='0' function='0'/></source></hostdev></devices></domain>")
    assert octal.hostdevs[0].address == (0, 8, 0, 0)


def test_block_disk_source():
    d = load("vm-block-disk.xml")
    assert d.block_disks and all(s.startswith("/dev/") for s in d.block_disks)
    assert d.hostdevs == ()


def test_broken_xml_is_reported_not_raised():
    d = domain("z-ceph-1", "defined", "error: failed to get domain 'z-ceph-1'")
    assert d.error.startswith("unreadable definition") and d.hostdevs == ()


def test_live_definition_adds_hot_plugged_devices():
    from iommu_audit.parsers.libvirt import merged
    defined = domain("z-ceph-1", "running", (DATA / "vm-hostdev-managed.xml").read_text())
    live = domain("z-ceph-1", "live", "<domain><devices><hostdev mode='subsystem' type='pci' managed='yes'><source>"
                                      "<address domain='0x0000' bus='0x0b' slot='0x00' function='0x0'/></source>"
                                      "</hostdev></devices></domain>")
    both = merged(defined, live)
    assert both.running and (0, 11, 0, 0) in [h.address for h in both.hostdevs]
    assert len(both.hostdevs) == len(defined.hostdevs) + 1


def test_placement_of_a_pinned_vm():
    xml = """<domain type='kvm'><name>vm</name><vcpu placement='static' cpuset='0-9,20-29'>4</vcpu>
      <cputune><vcpupin vcpu='0' cpuset='2'/><vcpupin vcpu='1' cpuset='3'/><emulatorpin cpuset='0-1'/></cputune>
      <numatune><memory mode='strict' nodeset='0'/><memnode cellid='0' mode='strict' nodeset='0'/></numatune>
      <devices/></domain>"""
    p = domain("vm", "defined", xml).placement
    assert (p.vcpus, p.cpuset, p.vcpupin, p.auto, p.memory_nodeset, p.memory_mode) == (
        4, "0-9,20-29", ((0, "2"), (1, "3")), False, "0", "strict")


def test_placement_of_an_unpinned_and_an_auto_vm():
    p = load("vm-hostdev-managed.xml").placement
    assert p.cpuset == "" and p.vcpupin == () and p.memory_nodeset == "" and not p.auto
    auto = domain("vm", "defined", "<domain><vcpu placement='auto'>2</vcpu><numatune><memory mode='strict' "
                  "placement='auto'/></numatune><devices/></domain>").placement
    assert auto.auto and auto.vcpus == 2 and auto.memory_nodeset == ""


def test_live_status_file_holds_the_domain():
    # run/libvirt/qemu/<vm>.xml: the daemon's <domstatus> wraps the live <domain>.
    status = ("<domstatus state='running' reason='booted' pid='2301'><monitor path='/x' type='unix'/>"
              "<domain type='kvm' id='1'><name>z</name><devices><hostdev mode='subsystem' type='pci' managed='yes'>"
              "<source><address domain='0x0000' bus='0x0b' slot='0x00' function='0x0'/></source><alias name='hostdev0'/>"
              "</hostdev></devices></domain></domstatus>")
    d = domain("z", "live", status)
    assert d.running and [h.address for h in d.hostdevs] == [(0, 11, 0, 0)] and not d.error
    assert domain("z", "live", "<domstatus state='running'/>").error.startswith("live status")


def test_file_disk_sources_are_kept():
    d = domain("z", "defined", "<domain><devices><disk type='file' device='disk'><source file='/dev/sdb'/></disk>"
                               "<disk type='block' device='lun'><source dev='/dev/sdc1'/></disk></devices></domain>")
    assert d.file_disks == ("/dev/sdb",) and d.block_disks == ("/dev/sdc1",)
