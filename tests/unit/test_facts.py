"""HostFacts' per-host indexes (memo): computed once, never carried into a modified copy."""

import dataclasses

from iommu_audit.rules import vms


def test_indexes_are_computed_once_per_host(host):
    facts = host.facts()
    assert facts.boot_sources() == facts.boot_sources()
    assert facts.boot_sources() is not facts.boot_sources()  # callers get their own list
    assert [d.name for d, _ in facts.hostdev_users("0000:06:00.0")] == ["z-ceph-1"]
    assert set(facts._memo) >= {"boot_sources", "hostdev_users"}


def test_a_modified_copy_does_not_reuse_the_originals_indexes(host, dl360):
    facts = host.facts()
    assert vms.assigned_to_vm(facts, dl360.device_named("ceph-nvme-1")).ok  # fills the memo
    bare = dataclasses.replace(facts, domains=[])
    assert bare.hostdev_users("0000:06:00.0") == []
    assert not vms.assigned_to_vm(bare, dl360.device_named("ceph-nvme-1")).ok
    assert bare.disk_sources() == [] and facts.disk_sources() != []
