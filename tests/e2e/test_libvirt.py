"""VM assignment against a real libvirtd, read through virsh exactly as on a host.

The audited host is this machine (read-only): the profile names two of its own PCI
functions, and a private libvirtd holds inactive domains z-ceph-1/z-ceph-2 whose
<hostdev> entries are edited with virsh attach-device/detach-device --config.
"""

from pathlib import Path

import pytest

from tests.e2e.audit_run import audit, write_profile


def local_endpoints(n=2):
    out = []
    for d in sorted(Path("/sys/bus/pci/devices").iterdir()):
        cls = (d / "class").read_text().strip()
        if not cls.startswith("0x0604") and not cls.startswith("0x0600"):
            out.append((d.name, f"{(d / 'vendor').read_text().strip()[2:]}:{(d / 'device').read_text().strip()[2:]}"))
    if len(out) < n:
        pytest.skip(f"this machine has fewer than {n} PCI endpoints")
    return out[:n]


@pytest.fixture
def vms(libvirtd_server):
    for vm in ("z-ceph-1", "z-ceph-2"):
        libvirtd_server.virsh("undefine", vm, check=False)  # start from fresh definitions
        libvirtd_server.define_domain(vm)
    yield libvirtd_server
    for vm in ("z-ceph-1", "z-ceph-2"):
        libvirtd_server.undefine(vm)


def run_vm_checks(tmp_path, server, devices):
    profile = write_profile(tmp_path / "libvirt.yaml", cpu_vendor="intel", devices=devices)
    return audit(tmp_path, profile, "--hosts=local://", "-k", "test_assigned_to_vm",
                 env={"LIBVIRT_DEFAULT_URI": server.uri})


def test_vm_assignment_through_virsh(vms, tmp_path):
    (a, a_id), (b, b_id) = local_endpoints()
    devices = [{"name": "dev-a", "address": a, "id": a_id, "vm": "z-ceph-1"},
               {"name": "dev-b", "address": b, "id": b_id, "vm": "z-ceph-2"}]
    vms.attach_hostdev("z-ceph-1", a)
    vms.attach_hostdev("z-ceph-2", b)
    run = run_vm_checks(tmp_path, vms, devices)
    assert run.outcome("test_assigned_to_vm[local-dev-a]") == "passed", run.output
    assert run.outcome("test_assigned_to_vm[local-dev-b]") == "passed", run.output

    vms.attach_hostdev("z-ceph-2", a)  # the same function defined in a second VM
    run = run_vm_checks(tmp_path, vms, devices)
    assert run.outcome("test_assigned_to_vm[local-dev-a]") == "failed"
    assert f"{a} is also defined in z-ceph-2" in run.messages["test_assigned_to_vm[local-dev-a]"]

    vms.detach_hostdev("z-ceph-1", a)  # now only in the wrong VM
    run = run_vm_checks(tmp_path, vms, devices)
    msg = run.messages["test_assigned_to_vm[local-dev-a]"]
    assert run.outcome("test_assigned_to_vm[local-dev-a]") == "failed"
    assert f"z-ceph-1 has no <hostdev> for {a}" in msg and "also defined in z-ceph-2" in msg

    vms.detach_hostdev("z-ceph-2", a)  # in no VM at all
    run = run_vm_checks(tmp_path, vms, devices)
    assert run.outcome("test_assigned_to_vm[local-dev-a]") == "failed"
    assert "also defined" not in run.messages["test_assigned_to_vm[local-dev-a]"]


def test_undefined_vm_is_a_clear_failure(vms, tmp_path):
    (a, a_id), _ = local_endpoints()
    run = run_vm_checks(tmp_path, vms, [{"name": "dev-a", "address": a, "id": a_id, "vm": "z-missing"}])
    msg = run.messages["test_assigned_to_vm[local-dev-a]"]
    assert run.outcome("test_assigned_to_vm[local-dev-a]") == "failed"
    assert "no libvirt domain named z-missing" in msg and "z-ceph-1" in msg
