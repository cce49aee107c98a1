"""NUMA placement: a passed device and the vCPUs and memory of its VM on the same node."""

from iommu_audit.facts import HostFacts
from iommu_audit.parsers.libvirt import Placement
from iommu_audit.parsers.platform import cpus
from iommu_audit.profile import Device, Profile
from iommu_audit.rules.devices import _missing as device_missing, locate
from iommu_audit.verdict import Verdict, failed, passed


def vcpu_cpus(p: Placement) -> set[int] | None:
    """Host CPUs the VM's vCPUs may run on, or None when any vCPU may run anywhere."""
    pins = dict(p.vcpupin)
    allowed: set[int] = set()
    for vcpu in range(max(p.vcpus, len(pins), 1)):
        text = pins.get(vcpu, p.cpuset)
        if not text:
            return None
        allowed |= cpus(text)
    return allowed


def numa_placement(facts: HostFacts, device: Device, profile: Profile) -> Verdict:
    addr = locate(facts, device)
    if addr is None:
        return device_missing(device)
    nodes = facts.platform.node_cpus
    node = facts.platform.numa_node.get(addr)
    if not nodes and facts.offline_copy:
        return failed("the copy has no sys/devices/system/node/node*/cpulist: placement cannot be judged",
                      "the host's NUMA node CPU lists", "copy /sys/devices/system/node/node*/cpulist into the sysroot")
    if len(nodes) < 2:
        return passed("one NUMA node: nothing to place")
    if node is None or node < 0:
        return failed(f"the firmware gives {addr} no NUMA node (numa_node {'missing' if node is None else node}): "
                      "placement cannot be judged", f"{addr} with a NUMA node",
                      "find the socket the slot is wired to (server manual, lspci -vt) and pin the VM to that node's "
                      "CPUs and memory; check the firmware's NUMA/SRAT settings")
    dom = next((d for d in facts.domains if d.name == device.vm), None)
    if dom is None:
        return failed(f"{device.vm} is not defined: placement cannot be judged", f"{device.vm} defined and pinned",
                      "define the VM (see assigned-to-vm)")
    # The nodes of every device of this VM: a VM holding devices on both sockets may span them.
    want = {n for d in profile.passthrough_devices if d.vm == device.vm
            for a in [locate(facts, d)] if a for n in [facts.platform.numa_node.get(a)] if n is not None and n >= 0}
    want_cpus = ",".join(nodes[n] for n in sorted(want) if n in nodes)
    want_nodes = ",".join(str(n) for n in sorted(want))
    p = dom.placement
    fix = (f"virsh edit {device.vm}: <vcpu placement='static' cpuset='{want_cpus}'>{p.vcpus or 'N'}</vcpu> and "
           f"<numatune><memory mode='strict' nodeset='{want_nodes}'/></numatune> (node {want_nodes}: CPUs {want_cpus})")
    expected = f"{device.vm}'s vCPUs and memory on node {want_nodes}, where {addr} sits"
    evidence = [f"{addr} numa_node {node}"] + [f"node{n} cpulist {c}" for n, c in sorted(nodes.items())]
    try:
        allowed = vcpu_cpus(p)
        memory = cpus(p.memory_nodeset) if p.memory_nodeset else None
    except ValueError:
        return failed(f"{device.vm}: unreadable cpuset/nodeset ({p.cpuset!r}, {p.vcpupin!r}, {p.memory_nodeset!r})",
                      expected, fix, evidence)
    if p.auto or allowed is None:
        how = "placement='auto' (numad picks a node without regard to the device)" if p.auto else "not pinned"
        return failed(f"{device.vm} is {how} while {addr} sits on node {node}: its I/O may cross the socket link",
                      expected, fix, evidence)
    cpu_nodes = {facts.platform.node_of_cpu(c) for c in allowed}
    problems = []
    if not cpu_nodes <= want:
        problems.append(f"vCPUs may run on node(s) {', '.join(str(n) for n in sorted(cpu_nodes, key=str))}")
    if memory is not None and not memory <= want:
        problems.append(f"memory on node(s) {p.memory_nodeset} (mode {p.memory_mode})")
    if problems:
        return failed(f"{addr} sits on node {node}; {device.vm}: " + "; ".join(problems), expected, fix, evidence)
    mem = f", memory on node {p.memory_nodeset}" if memory is not None else \
        " (no <numatune>: memory follows the vCPUs' node by default)"
    return passed(f"{addr} on node {node}; {device.vm}'s vCPUs pinned to node {want_nodes}{mem}", evidence)
