"""`iommu-audit discover`: a starter profile written from what a host shows now.

Reads a live host (this one, or ssh://... through testinfra) or a --sysroot copy with the
same one-round-trip probe and parsers as the audit. Every PCI endpoint is listed: devices a
libvirt definition already passes through get `vm:` (the audit then checks them as such),
the others `host: true` with the line to change when one should go to a VM. Whole disks a
VM already has are listed with that VM; the other whole disks are left as comments.
The result is validated with the profile loader before it is written.
"""

import argparse
import datetime
import re
import sys
import tempfile
from pathlib import Path

import testinfra

from iommu_audit import gather, profile as profiles
from iommu_audit.facts import BY_ID, HostFacts
from iommu_audit.pci import address_numbers, addresses_in
from iommu_audit.parsers.sysfs import PciDevice

# Short names for test ids, by PCI class prefix; other classes use "pci".
_SHORT = {"0108": "nvme", "0106": "sata", "0104": "raid", "0107": "sas", "0100": "scsi", "0200": "nic",
          "0300": "gpu", "0302": "gpu", "0403": "audio", "0c03": "usb", "0c05": "smbus", "0600": "hostbridge",
          "0601": "isa", "0806": "iommu"}
# by-id names a VM should be given, best first (stable across controllers and firmware).
_BY_ID_PREFERENCE = ("wwn-", "nvme-eui.", "scsi-3", "ata-", "nvme-", "scsi-")
_NOT_A_DISK = re.compile(r"^(dm-|md|lvm-pv-|loop|zram|sr)|-part\d+$")


class DiscoverError(Exception):
    """One line for the operator; code 4 for bad input, 1 when the host could not be read."""

    def __init__(self, message: str, code: int = 4):
        super().__init__(message)
        self.code = code


def _name(dev: PciDevice, vm: str | None) -> str:
    """Unique and readable in test ids: z-ceph-1-nvme-06-00-0, nic-02-00-1."""
    domain, bus, slot, fn = address_numbers(dev.address)
    where = (f"{domain:04x}-" if domain else "") + f"{bus:02x}-{slot:02x}-{fn}"
    prefix = f"{_safe(vm)}-" if vm else ""
    return f"{prefix}{_SHORT.get(dev.class_code[:4], 'pci')}-{where}"


def _safe(vm: str) -> str:
    """A VM name as part of a profile name (libvirt allows spaces and more)."""
    return re.sub(r"[^A-Za-z0-9._-]", "-", vm).lstrip("._-") or "vm"


def _slot_of(facts: HostFacts, addr: str) -> str | None:
    """The /sys/bus/pci/slots name the function sits in (directly or behind a switch card)."""
    on_path = addresses_in(facts.pci[addr].path)
    found = [s for s, slot_addr in facts.slots.items() if any(a.startswith(slot_addr + ".") for a in on_path)]
    return found[0] if len(found) == 1 else None


def _vms_of(facts: HostFacts, addr: str) -> list[str]:
    return sorted({dom.name for dom, _ in facts.hostdev_users(addr)})


def _q(text: str) -> str:
    """A YAML double-quoted scalar (addresses, ids and slots must stay strings)."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _device_entry(facts: HostFacts, dev: PciDevice) -> list[str]:
    vms = _vms_of(facts, dev.address)
    group = dev.iommu_group
    others = [m for m in facts.groups.get(group or "", []) if m != dev.address]
    mates = ", ".join(facts.pci[m].describe() if m in facts.pci else m for m in others) or "alone"
    ctrl = facts.nvme.get(dev.address)
    lines = [f"  # {dev.describe()}", f"  # IOMMU group {group if group is not None else '(none)'}: {mates}"]
    if len(vms) > 1:
        lines.append(f"  # passed to several VMs now ({', '.join(vms)}): keep one")
    vm = vms[0] if vms else None
    lines += [f"  - name: {_name(dev, vm)}", f"    address: {_q(dev.address)}", f"    id: {_q(dev.id)}"]
    slot = _slot_of(facts, dev.address)
    if slot:
        lines.append(f"    slot: {_q(slot)}")
    if ctrl and ctrl.serial:
        lines.append(f"    serial: {_q(ctrl.serial)}")
    if ctrl and ctrl.model:
        lines.append(f"    description: {_q(ctrl.model)}")
    if vm:
        lines.append(f"    vm: {_q(vm)}")
    elif dev.driver == "vfio-pci":
        lines.append("    vm: FILL-IN   # bound to vfio-pci but in no VM definition: name the libvirt domain")
    else:
        lines.append("    host: true   # to pass it through: replace with  vm: <libvirt domain>")
    return lines


def _disk_vms(facts: HostFacts) -> dict[str, tuple[str, str]]:
    """{kernel name: (VM, the path its definition uses)} for whole disks VMs already have."""
    out = {}
    for dom in facts.domains:
        for path in dom.block_disks:
            name = facts.kernel_name(path)
            if name:
                out.setdefault(name, (dom.name, path))
    return out


def _disk_entries(facts: HostFacts) -> list[str]:
    names: dict[str, list[str]] = {}
    for by_id, kname in sorted(facts.by_id.items()):
        bd = facts.block.get(kname)
        if bd is not None and bd.disk == kname and not _NOT_A_DISK.search(by_id) and not kname.startswith(("dm-", "md")):
            names.setdefault(kname, []).append(by_id)
    used = _disk_vms(facts)
    lines = []
    for kname, ids in sorted(names.items()):
        vm, path = used.get(kname, (None, ""))
        given = path.rsplit("/", 1)[-1] if path.startswith(BY_ID) else ""
        best = given if given in ids else min(ids, key=lambda i: (next(
            (n for n, p in enumerate(_BY_ID_PREFERENCE) if i.startswith(p)), len(_BY_ID_PREFERENCE)), i))
        also = ", ".join(i for i in ids if i != best)
        entry = [f"  - name: {_safe(vm)}-disk-{kname}" if vm else f"  - name: disk-{kname}",
                 f"    by_id: {_q(best)}", f"    vm: {_q(vm)}" if vm else "    vm: <libvirt domain>"]
        comment = f"  # /dev/{kname}" + (f" under {facts.block[kname].pci_address}" if facts.block[kname].pci_address else "") \
            + (f"; also known as {also}" if also else "")
        if vm:
            lines += [comment, *entry]
        else:
            lines += [comment + "; uncomment to pass the whole disk to a VM", *("#" + e[1:] for e in entry)]
    return lines


def profile_text(facts: HostFacts, name: str, source: str) -> str:
    if facts.cpu_vendor not in ("intel", "amd"):
        raise DiscoverError(f"{source}: CPU vendor {facts.cpu_vendor or '(unknown)'!r} is neither Intel nor AMD "
                            "(no /proc/cpuinfo vendor_id?): this tool audits x86 KVM hosts")
    # Host bridges and PCI/PCIe bridges are never passed through; the LPC (ISA bridge class) is an endpoint.
    endpoints = [d for _, d in sorted(facts.pci.items()) if not (d.is_bridge or d.class_code.startswith("0600"))]
    today = datetime.date.today().isoformat()
    out = [f"# Starter profile discovered from {source} (host {facts.hostname or '?'}, kernel {facts.kernel or '?'}) "
           f"on {today} by `iommu-audit discover`.",
           "# Devices a libvirt definition passes through now have their vm:; every other PCI endpoint is kept",
           "# on the host (host: true). For each device a VM should get, write its libvirt domain as vm:.",
           "# Delete entries the audit should not look at (host: true also proves vfio leaves them alone).",
           f"name: {name}", "platform:", f"  cpu_vendor: {facts.cpu_vendor}",
           "kernel:", f"  # running now: {facts.cmdline}",
           "  cmdline_require: []   # e.g. [iommu=pt]; intel_iommu=on is implied by cpu_vendor: intel",
           "  cmdline_forbid: []", "devices:"]
    for dev in endpoints:
        out += _device_entry(facts, dev)
    disks = _disk_entries(facts)
    out += ["disks:" if any(not line.startswith("#") and line.startswith("  -") for line in disks) else "disks: []"]
    out += disks
    return "\n".join(out) + "\n"


def _facts(args) -> tuple[HostFacts, str]:
    if args.sysroot:
        root = Path(args.sysroot)
        if not (root / "proc").is_dir() and not (root / "sys").is_dir():
            raise DiscoverError(f"--sysroot {args.sysroot}: not a host copy (no proc/ or sys/ inside); "
                                "see README, 'Sysroot layout'")
        target = gather.Target(root.resolve().name, f"sysroot:{args.sysroot}", sysroot=str(root.resolve()))
    else:
        spec = args.hosts or "local://"
        if "," in spec:
            raise DiscoverError(f"--hosts {spec}: discover reads one host; run it once per host")
        try:
            host = testinfra.get_host(spec, ssh_config=args.ssh_config, ssh_identity_file=args.ssh_identity_file,
                                      sudo=args.sudo)
        except Exception as exc:  # testinfra raises RuntimeError/ValueError for bad specs
            raise DiscoverError(f"--hosts {spec}: {exc}") from None
        target = gather.Target(host.backend.get_hostname(), spec, host=host)
    try:
        return gather.parse(gather.gather(target)), target.source
    except gather.GatherError as exc:
        raise DiscoverError(str(exc), code=1) from None


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="iommu-audit discover",
                                description="Write a starter hardware profile from what a host shows now.")
    p.add_argument("output", help="profile file to write, e.g. profiles/node1.yaml ('-' for standard output)")
    p.add_argument("--hosts", help="one testinfra host spec: ssh://root@node1, paramiko://..., local:// (default)")
    p.add_argument("--sysroot", help="an offline copy of a host (see README, 'Sysroot layout')")
    p.add_argument("--name", help="the profile's name (default: the output file's name without .yaml)")
    p.add_argument("--ssh-config"), p.add_argument("--ssh-identity-file")
    p.add_argument("--sudo", action="store_true", help="run the probe with sudo (needed as non-root for libvirt)")
    p.add_argument("--force", action="store_true", help="overwrite an existing output file")
    return p.parse_args(argv)


def run(args: argparse.Namespace) -> str:
    if args.hosts and args.sysroot:
        raise DiscoverError("--hosts and --sysroot cannot be combined: discover one host or one copy")
    out = None if args.output == "-" else Path(args.output)
    if out is not None and out.exists() and not args.force:
        raise DiscoverError(f"{out} exists: choose another file or add --force to overwrite it")
    name = args.name or (out.name.removesuffix(".yaml").removesuffix(".yml") if out else "discovered")
    if not re.match(r"^[A-Za-z0-9][A-Za-z0-9._-]*$", name):
        raise DiscoverError(f"profile name {name!r}: use letters, digits, '.', '_', '-' (give --name)")
    facts, source = _facts(args)
    text = profile_text(facts, name, source)
    _validate(text)
    if out is None:
        sys.stdout.write(text)
    else:
        out.write_text(text)
    return text


def _validate(text: str) -> None:
    """What we write must load as a profile; a failure here is a bug in discover, said plainly."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp, "discovered.yaml")
        path.write_text(text)
        try:
            profiles.load(str(path), Path(tmp))
        except profiles.ProfileError as exc:
            raise DiscoverError(f"internal error, the discovered profile does not load ({exc}); please report it") from None


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] != ["discover"]:
        sys.stderr.write("usage: iommu-audit discover OUTPUT [--hosts SPEC | --sysroot DIR] [--force]\n"
                         "(the audit itself runs as: pytest --profile NAME ...)\n")
        return 4
    try:
        args = parse_args(argv[1:])
        run(args)
    except DiscoverError as exc:
        sys.stderr.write(f"iommu-audit discover: {exc}\n")
        return exc.code
    except OSError as exc:
        sys.stderr.write(f"iommu-audit discover: {exc.filename}: {exc.strerror}\n")
        return 4
    if args.output != "-":
        sys.stderr.write(f"wrote {args.output}: fill in the vm: of each device to pass through, then run "
                         f"pytest --profile={args.output}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
