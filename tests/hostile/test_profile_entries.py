"""Hostile inputs: a profile that names one function twice, and one with ten thousand devices."""

import time
from dataclasses import replace

import yaml

from iommu_audit.parsers.sysfs import PciDevice
from iommu_audit.profile import Device
from iommu_audit.rules import devices
from tests.conftest import PROJECT
from tests.e2e.audit_run import audit

HOST = "dl360-gen9-01"


def test_one_function_under_two_profile_entries_fails_both(host, tmp_path):
    # ceph-nvme-1 by address, and again by the slot of its downstream port: the same 06:00.0.
    host.write("sys/bus/pci/slots/4/address", "0000:05:08\n")
    doc = yaml.safe_load((PROJECT / "profiles" / "dl360-gen9.yaml").read_text())
    doc["devices"].append({"name": "ceph-nvme-x", "slot": "4", "id": "144d:a808", "vm": "z-ceph-2"})
    profile = tmp_path / "twice.yaml"
    profile.write_text(yaml.safe_dump(doc))
    run = audit(tmp_path, profile, f"--sysroot={host.root}", "-k", "device_present")
    assert run.rc == 1, run.output
    assert run.failed() == {f"test_device_present[{HOST}-ceph-nvme-1]", f"test_device_present[{HOST}-ceph-nvme-x]"}
    assert "also the profile's ceph-nvme-x (slot 4)" in run.messages[f"test_device_present[{HOST}-ceph-nvme-1]"]


def test_ten_thousand_devices_are_checked_in_seconds(host, dl360):
    # iommu-group-clean once located every profile device for each device: 10,000 took minutes.
    facts = host.facts()
    many = []
    for i in range(10_000):
        addr = f"0001:{i // 256:02x}:{(i % 256) // 8:02x}.{i % 8}"
        facts.pci[addr] = PciDevice(addr, "144d", "a808", "010802", "144d:a801", "vfio-pci", None, f"g{i}",
                                    f"pci0001:00/{addr}")
        facts.groups[f"g{i}"] = [addr]
        many.append(Device(f"d{i}", "144d:a808", f"vm{i}", address=addr))
    profile = replace(dl360, devices=many)
    start = time.perf_counter()
    verdicts = [devices.iommu_group_clean(facts, d, profile) for d in many]
    assert all(v.ok for v in verdicts) and time.perf_counter() - start < 10
