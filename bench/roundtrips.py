"""Benchmark: facts are gathered in one round trip per host, whatever the number of devices.

    python bench/roundtrips.py                      # synthetic hosts with 4 and 256 NVMe drives
    python bench/roundtrips.py --devices 4,64,256
    python bench/roundtrips.py --hosts ssh://node1 --ssh-config ~/.ssh/config   # a real host too

For each size it builds a host tree shaped like the DL360 Gen9 sample (N NVMe
drives behind switch ports, each in its own IOMMU group, bound to vfio-pci and
defined in its own VM) plus a profile listing all N, then counts the commands
testinfra sends while gathering, and times gather, parse and every rule.
"""

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import testinfra
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from iommu_audit import gather, profile as profiles  # noqa: E402
from iommu_audit.rules import devices, disks, firmware, kernel, vms  # noqa: E402

SAMPLE = ROOT / "samples" / "dl360-gen9-01"
HOST_RULES = [firmware.firmware_iommu, kernel.cmdline_iommu, kernel.cmdline_no_acs_override,
              kernel.cmdline_persistent, kernel.iommu_active, kernel.interrupt_remapping, kernel.vfio_modules,
              kernel.no_known_blockers, kernel.vfio_ids_scope]


def build_host(root: Path, n: int) -> list[dict]:
    """Copy the sample and add n NVMe drives at 0000:40+..., one group and one VM each."""
    shutil.copytree(SAMPLE, root, symlinks=True)
    template = (root / "etc/libvirt/qemu/z-ceph-1.xml").read_text()
    devs = []
    for i in range(n):
        bus, slot = 0x40 + i // 32, i % 32
        addr = f"0000:{bus:02x}:{slot:02x}.0"
        dev_dir = root / f"sys/devices/pci0000:40/{addr}"
        dev_dir.mkdir(parents=True)
        for f, v in (("vendor", "0x144d"), ("device", "0xa808"), ("class", "0x010802"),
                     ("subsystem_vendor", "0x144d"), ("subsystem_device", "0xa801"), ("driver_override", "vfio-pci")):
            (dev_dir / f).write_text(v + "\n")
        (dev_dir / "driver").symlink_to(os.path.relpath(root / "sys/bus/pci/drivers/vfio-pci", dev_dir))
        group = root / f"sys/kernel/iommu_groups/{100 + i}"
        (group / "devices").mkdir(parents=True)
        (group / "devices" / addr).symlink_to(os.path.relpath(dev_dir, group / "devices"))
        (dev_dir / "iommu_group").symlink_to(os.path.relpath(group, dev_dir))
        (root / f"sys/bus/pci/devices/{addr}").symlink_to(os.path.relpath(dev_dir, root / "sys/bus/pci/devices"))
        (root / f"etc/driverctl.d/pci-{addr}").write_text("vfio-pci\n")
        vm = f"z-bench-{i}"
        (root / f"etc/libvirt/qemu/{vm}.xml").write_text(
            template.replace("z-ceph-1", vm).replace("bus='0x06' slot='0x00'", f"bus='0x{bus:02x}' slot='0x{slot:02x}'"))
        devs.append({"name": f"bench-nvme-{i}", "address": addr, "id": "144d:a808", "vm": vm})
    return devs


def counting(host):
    """Wrap the host's backend so every command it sends is counted."""
    calls = []
    real = host.backend.run
    host.backend.run = lambda *a, **k: calls.append(a[0]) or real(*a, **k)
    return calls


def measure(target: gather.Target, profile: profiles.Profile) -> dict:
    calls = counting(target.host)
    t0 = time.perf_counter()
    g = gather.gather(target)
    t1 = time.perf_counter()
    facts = gather.parse(g)
    t2 = time.perf_counter()
    verdicts = [r(facts, profile) for r in HOST_RULES]
    for d in profile.passthrough_devices:
        verdicts += [devices.device_present(facts, d, profile), devices.device_not_used_by_host(facts, d),
                     devices.iommu_group_clean(facts, d, profile), devices.bound_to_vfio(facts, d),
                     devices.vfio_binding_persistent(facts, d), vms.assigned_to_vm(facts, d)]
    for d in profile.disks:
        verdicts += [disks.disk_present(facts, d), disks.disk_not_used_by_host(facts, d),
                     disks.disk_assigned_to_vm(facts, d)]
    t3 = time.perf_counter()
    return {"round_trips": len(calls), "bytes": len(g.probe_output), "gather_s": t1 - t0, "parse_s": t2 - t1,
            "rules_s": t3 - t2, "verdicts": len(verdicts), "failed": sum(not v.ok for v in verdicts)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--devices", default="4,256", help="comma-separated device counts (default 4,256)")
    ap.add_argument("--hosts", help="also measure real hosts (testinfra specs, comma separated)")
    ap.add_argument("--ssh-config")
    ap.add_argument("--profile", default="dl360-gen9", help="profile for --hosts (default dl360-gen9)")
    args = ap.parse_args()
    print(f"{'target':<28}{'devices':>8}{'round trips':>13}{'bytes':>10}{'gather s':>10}{'parse s':>9}"
          f"{'rules s':>9}{'verdicts':>10}")
    with tempfile.TemporaryDirectory() as tmp:
        for n in [int(x) for x in args.devices.split(",")]:
            root = Path(tmp) / f"bench-{n}"
            devs = build_host(root, n)
            doc = yaml.safe_load((ROOT / "profiles/dl360-gen9.yaml").read_text())
            doc["devices"] = devs
            (Path(tmp) / f"p{n}.yaml").write_text(yaml.safe_dump(doc))
            profile = profiles.load(str(Path(tmp) / f"p{n}.yaml"), ROOT / "profiles")
            target = gather.Target(root.name, "bench", host=testinfra.get_host("local://"), sysroot=str(root))
            r = measure(target, profile)
            print(f"{'sysroot ' + root.name:<28}{n:>8}{r['round_trips']:>13}{r['bytes']:>10}{r['gather_s']:>10.3f}"
                  f"{r['parse_s']:>9.3f}{r['rules_s']:>9.3f}{r['verdicts']:>10}")
            if r["failed"]:
                print(f"  note: {r['failed']} verdicts failed on the synthetic host", file=sys.stderr)
    if args.hosts:
        profile = profiles.load(args.profile, ROOT / "profiles")
        for h in testinfra.get_hosts(args.hosts.split(","), ssh_config=args.ssh_config):
            r = measure(gather.Target(h.backend.get_hostname(), h.backend.get_pytest_id(), host=h), profile)
            print(f"{h.backend.get_pytest_id():<28}{len(profile.devices):>8}{r['round_trips']:>13}{r['bytes']:>10}"
                  f"{r['gather_s']:>10.3f}{r['parse_s']:>9.3f}{r['rules_s']:>9.3f}{r['verdicts']:>10}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
