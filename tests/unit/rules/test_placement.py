from iommu_audit.parsers.libvirt import Placement
from iommu_audit.rules.placement import numa_placement, vcpu_cpus

VM = "etc/libvirt/qemu/z-ceph-1.xml"
PINNED = ("  <vcpu placement='static' cpuset='0-9,20-29'>4</vcpu>\n  <numatune>\n"
          "    <memory mode='strict' nodeset='0'/>\n  </numatune>\n")


def nvme1(dl360):
    return dl360.device_named("ceph-nvme-1")


def test_sample_vms_are_pinned_to_the_node_of_their_drives(host, dl360):
    v = numa_placement(host.facts(), nvme1(dl360), dl360)
    assert v.ok and "0000:06:00.0 on node 0" in v.found and "memory on node 0" in v.found
    assert "node1 cpulist 10-19,30-39" in v.evidence


def test_vm_pinned_to_the_other_socket_is_advised_with_the_values_to_use(host, dl360):
    host.replace(VM, PINNED, PINNED.replace("0-9,20-29", "10-19,30-39").replace("nodeset='0'", "nodeset='1'"))
    v = numa_placement(host.facts(), nvme1(dl360), dl360)
    assert not v.ok and "vCPUs may run on node(s) 1" in v.found and "memory on node(s) 1" in v.found
    assert "cpuset='0-9,20-29'>4</vcpu>" in v.fix and "nodeset='0'" in v.fix


def test_device_on_node_1_with_vm_on_node_0(host, dl360):
    host.write("sys/bus/pci/devices/0000:06:00.0/numa_node", "1\n")
    v = numa_placement(host.facts(), nvme1(dl360), dl360)
    assert not v.ok and "0000:06:00.0 sits on node 1" in v.found and "cpuset='10-19,30-39'" in v.fix


def test_unpinned_vm_and_numad_placement(host, dl360):
    host.replace(VM, PINNED, "  <vcpu placement='static'>4</vcpu>\n")
    v = numa_placement(host.facts(), nvme1(dl360), dl360)
    assert not v.ok and "z-ceph-1 is not pinned while 0000:06:00.0 sits on node 0" in v.found
    host.replace(VM, "  <vcpu placement='static'>4</vcpu>\n", "  <vcpu placement='auto'>4</vcpu>\n")
    assert "placement='auto'" in numa_placement(host.facts(), nvme1(dl360), dl360).found


def test_vcpupin_overrides_the_cpuset(host, dl360):
    tune = "  <cputune>\n" + "".join(f"    <vcpupin vcpu='{i}' cpuset='{c}'/>\n" for i, c in enumerate([1, 2, 3, 12])) \
        + "  </cputune>\n"
    host.replace(VM, "  <numatune>", tune + "  <numatune>")
    v = numa_placement(host.facts(), nvme1(dl360), dl360)
    assert not v.ok and "vCPUs may run on node(s) 0, 1" in v.found
    host.replace(VM, "cpuset='12'", "cpuset='4'")
    assert numa_placement(host.facts(), nvme1(dl360), dl360).ok


def test_single_node_host_and_firmware_without_node(host, dl360):
    host.remove("sys/devices/system/node/node1")
    assert numa_placement(host.facts(), nvme1(dl360), dl360).ok
    host.write("sys/devices/system/node/node1/cpulist", "10-19,30-39\n")
    host.write("sys/bus/pci/devices/0000:06:00.0/numa_node", "-1\n")
    v = numa_placement(host.facts(), nvme1(dl360), dl360)
    assert not v.ok and "numa_node -1" in v.found and "cannot be judged" in v.found
    host.remove("sys/devices/system/node")
    v = numa_placement(host.facts(), nvme1(dl360), dl360)
    assert not v.ok and "the copy has no sys/devices/system/node" in v.found


def test_vm_that_is_not_defined_cannot_pass(host, dl360):
    host.remove(VM).remove(VM.replace("etc/", "run/"))  # neither defined nor running
    v = numa_placement(host.facts(), nvme1(dl360), dl360)
    assert not v.ok and "z-ceph-1 is not defined" in v.found


def test_vcpu_cpus():
    assert vcpu_cpus(Placement(vcpus=2, cpuset="0-1,^1")) == {0}
    assert vcpu_cpus(Placement(vcpus=2, vcpupin=((0, "3"),))) is None  # vCPU 1 may run anywhere
    assert vcpu_cpus(Placement(vcpus=2, cpuset="8", vcpupin=((0, "3"),))) == {3, 8}
