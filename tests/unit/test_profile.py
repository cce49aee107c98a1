"""Profile loading and validation, on YAML shaped like a real profile.

Every bad input starts from the bundled dl360-gen9 profile with one thing
changed, the way a person editing it would get it wrong, and must give exactly
one ProfileError line naming the file, the path in the document and the value.
"""

import datetime
from pathlib import Path

import pytest

from iommu_audit import profile as profiles
from iommu_audit.profile import ProfileError
from tests.conftest import PROJECT

PROFILES = PROJECT / "profiles"
BUNDLED = (PROFILES / "dl360-gen9.yaml").read_text()

# The first device of the bundled profile, as written there.
NVME1 = 'address: "0000:06:00.0"'
# The kernel.cmdline_require line, whatever the bundled profile requires today.
CMDLINE = next(line.strip() for line in BUNDLED.splitlines() if line.strip().startswith("cmdline_require:"))

WAIVER = """waivers:
  - requirement: {requirement}
    device: {device}
    reason: {reason}
    expires: {expires}
    approved_by: j.doe (change CHG-1234)"""


def edit(old: str, new: str, text: str = BUNDLED) -> str:
    """The bundled profile with the first `old` replaced by `new`."""
    assert old in text, f"{old!r} is not in the profile"
    return text.replace(old, new, 1)


def with_waiver(requirement="bound-to-vfio", device="ceph-nvme-1", reason="RMA case 5501 open",
                expires="2099-01-31") -> str:
    return edit("waivers: []", WAIVER.format(requirement=requirement, device=device, reason=reason,
                                             expires=expires))


def write(tmp_path: Path, text: str | bytes, name: str = "site.yaml") -> Path:
    path = tmp_path / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    return path


def load(tmp_path: Path, text: str | bytes) -> profiles.Profile:
    return profiles.load(str(write(tmp_path, text)), PROFILES)


def error(tmp_path: Path, text: str | bytes) -> str:
    """The ProfileError message for `text`; checks it is one line starting with the file."""
    path = write(tmp_path, text)
    with pytest.raises(ProfileError) as exc_info:
        profiles.load(str(path), PROFILES)
    message = str(exc_info.value)
    assert "\n" not in message, f"more than one line: {message!r}"
    assert message.startswith(f"{path}: "), message
    return message


# --- the bundled profile -----------------------------------------------------------------------

def test_bundled_profile_loads(dl360):
    assert dl360.name == "dl360-gen9"
    assert dl360.path == str(PROFILES / "dl360-gen9.yaml")
    assert dl360.cpu_vendor == "intel"
    assert "iommu=pt" in dl360.cmdline_require
    assert dl360.cmdline_forbid == []
    assert len(dl360.devices) == 4
    assert [d.name for d in dl360.passthrough_devices] == ["ceph-nvme-1", "ceph-nvme-2", "ceph-nvme-3"]
    assert [d.vm for d in dl360.passthrough_devices] == ["z-ceph-1", "z-ceph-2", "z-ceph-3"]
    assert [(d.name, d.address, d.vm) for d in dl360.host_devices] == [("host-nvme-4", "0000:09:00.0", None)]
    assert {d.id for d in dl360.devices} == {"144d:a808"}
    assert [(d.name, d.by_id, d.vm) for d in dl360.disks] == [
        ("gluster-hdd-1", "wwn-0x5000c500b1c2d3e4", "z-gluster-1"),
        ("gluster-hdd-2", "wwn-0x5000c500b1c2d3f5", "z-gluster-2"),
    ]
    assert dl360.disks[0].path == "/dev/disk/by-id/wwn-0x5000c500b1c2d3e4"
    assert dl360.waivers == []
    assert dl360.severity_of("vfio-ids-scope") == "required"  # raised from its catalog default
    assert dl360.severity_of("bound-to-vfio") == "required"
    assert dl360.device_named("gluster-hdd-2").vm == "z-gluster-2"
    assert dl360.device_named("nope") is None


def test_load_by_name_and_by_path_agree(tmp_path, dl360):
    copy = write(tmp_path, BUNDLED, "copy.yaml")
    by_path = profiles.load(str(copy), PROFILES)
    assert by_path.path == str(copy)
    assert by_path.devices == dl360.devices and by_path.disks == dl360.disks


def test_resolve_name_vs_path(tmp_path):
    assert profiles.resolve("dl360-gen9", PROFILES) == PROFILES / "dl360-gen9.yaml"
    # Anything that looks like a file is taken as it is, relative to the working directory.
    assert profiles.resolve("site.yaml", PROFILES) == Path("site.yaml")
    assert profiles.resolve("site.yml", PROFILES) == Path("site.yml")
    assert profiles.resolve("dl360-gen9.yaml", PROFILES) == Path("dl360-gen9.yaml")
    assert profiles.resolve("conf/site", PROFILES) == Path("conf/site")
    assert profiles.resolve(str(tmp_path / "x.yaml"), PROFILES) == tmp_path / "x.yaml"


# --- addresses ---------------------------------------------------------------------------------

@pytest.mark.parametrize("written, normalized", [
    ('"05:00.0"', "0000:05:00.0"),           # lspci short form: domain 0
    ('"0000:0A:00.0"', "0000:0a:00.0"),      # upper case hex
    ('"0001:c0:00.2"', "0001:c0:00.2"),      # second PCI segment
    ('"10000:e1:00.0"', "10000:e1:00.0"),    # Intel VMD domain, five hex digits
])
def test_address_normalized(tmp_path, written, normalized):
    p = load(tmp_path, edit(NVME1, f"address: {written}"))
    assert p.devices[0].address == normalized
    assert [d.address for d in p.devices[1:]] == ["0000:07:00.0", "0000:08:00.0", "0000:09:00.0"]


def test_unquoted_address_read_as_number_says_quote_it(tmp_path):
    # YAML 1.1 reads 0000:05:00.0 as a sexagesimal float: 0*3600 + 5*60 + 0.0 = 300.0.
    msg = error(tmp_path, edit(NVME1, "address: 0000:05:00.0"))
    assert "devices[0].address: expected a string, got 300.0" in msg
    assert "quote it" in msg


@pytest.mark.parametrize("bad", ["05:00", "0000:05:00.8", "zz:00.0", "0000:05:20.0", "0000:05:00"])
def test_malformed_address(tmp_path, bad):
    msg = error(tmp_path, edit(NVME1, f'address: "{bad}"'))
    assert f"devices[0].address: {bad!r} is not a PCI address" in msg
    assert "0000:05:00.0" in msg  # shows the expected form


def test_malformed_address_of_a_later_device(tmp_path):
    msg = error(tmp_path, edit('address: "0000:08:00.0"', 'address: "05:00"'))
    assert "devices[2].address: '05:00' is not a PCI address" in msg


# --- unknown keys, wrong types -----------------------------------------------------------------

def test_unknown_top_level_key(tmp_path):
    msg = error(tmp_path, edit("platform:", "plattform:\n  cpu_vendor: intel\nplatform:"))
    assert ": plattform: unknown key (allowed: " in msg
    assert "platform" in msg.split("allowed:")[1]


def test_unknown_key_in_a_device(tmp_path):
    msg = error(tmp_path, edit('    vm: z-ceph-2', '    vm: z-ceph-2\n    iommu_group: 17'))
    assert "devices[1].iommu_group: unknown key (allowed: address, description, host, id, name, serial, " \
           "slot, vm)" in msg


def test_unknown_key_in_a_disk(tmp_path):
    msg = error(tmp_path, edit("by_id: wwn-0x5000c500b1c2d3f5", "byid: wwn-0x5000c500b1c2d3f5"))
    assert "disks[1].byid: unknown key" in msg


@pytest.mark.parametrize("old, new, fragment", [
    (CMDLINE, "cmdline_require: intel_iommu=on iommu=pt",
     "kernel.cmdline_require: expected a list, got 'intel_iommu=on iommu=pt'"),
    (CMDLINE, "cmdline_require: [intel_iommu=on, 1]", "kernel.cmdline_require[1]: expected a string, got 1"),
    ("severity:\n  vfio-ids-scope: required", "severity: [vfio-ids-scope]",
     "severity: expected a mapping, got ['vfio-ids-scope']"),
    ("name: dl360-gen9", "name: [dl360, gen9]", "name: expected a string, got ['dl360', 'gen9']"),
    ("vm: z-ceph-3", "vm: 3", "devices[2].vm: expected a string, got 3"),
    ("    host: true", "    host: yes please", "devices[3].host: expected true, got 'yes please'"),
    ("by_id: wwn-0x5000c500b1c2d3e4", "by_id: [wwn-0x5000c500b1c2d3e4]",
     "disks[0].by_id: expected a string, got ['wwn-0x5000c500b1c2d3e4']"),
    ("    vm: z-ceph-2", "    vm: z-ceph-2\n    serial: 5", "devices[1].serial: expected a string, got 5 (quote it"),
    ("cpu_vendor: intel", "cpu_vendor: arm", "platform.cpu_vendor: 'arm' is not one of: intel, amd"),
])
def test_wrong_type_or_value(tmp_path, old, new, fragment):
    assert fragment in error(tmp_path, edit(old, new))


def test_devices_not_a_list(tmp_path):
    text = BUNDLED.split("devices:\n")[0] + "devices: ceph-nvme-1\n"
    assert "devices: expected a list, got 'ceph-nvme-1'" in error(tmp_path, text)


def test_device_not_a_mapping(tmp_path):
    text = BUNDLED.split("devices:\n")[0] + 'devices:\n  - "0000:06:00.0"\n'
    assert "devices[0]: expected a mapping, got '0000:06:00.0'" in error(tmp_path, text)


def test_unquoted_vendor_device_id_is_a_string(tmp_path):
    # Unlike addresses, vendor:device ids never look sexagesimal to YAML (4-digit parts).
    p = load(tmp_path, edit('id: "144d:a808"', "id: 1000:0097"))
    assert p.devices[0].id == "1000:0097"


@pytest.mark.parametrize("written", ['"144D:A808"', '"144d:A808"', "10DE:1EB8"])
def test_vendor_device_id_in_upper_case_is_lowered(tmp_path, written):
    p = load(tmp_path, edit('id: "144d:a808"', f"id: {written}"))
    assert p.devices[0].id == written.strip('"').lower()


@pytest.mark.parametrize("bad", ["144d-a808", "144da808", "0x144d:0xa808", "144d:a80", "144g:a808", "144D:A8080"])
def test_bad_vendor_device_id(tmp_path, bad):
    msg = error(tmp_path, edit('id: "144d:a808"', f'id: "{bad}"'))
    assert f"devices[0].id: {bad!r} is not valid: vendor:device in hex" in msg


def test_missing_required_keys(tmp_path):
    assert "devices[0]: missing required key 'id'" in error(tmp_path, edit('    id: "144d:a808"\n', ""))
    assert "disks[1]: missing required key 'vm'" in error(tmp_path, edit("    vm: z-gluster-2\n", ""))
    assert "(top): missing required key 'platform'" in error(tmp_path, "name: site\ndevices: []\n")


def test_device_found_by_slot_only(tmp_path):
    p = load(tmp_path, edit(NVME1, 'slot: "1"\n    serial: S4EWNX0R712345F'))
    assert p.devices[0].address is None
    assert (p.devices[0].slot, p.devices[0].serial) == ("1", "S4EWNX0R712345F")


def test_device_without_address_or_slot(tmp_path):
    msg = error(tmp_path, edit(f"    {NVME1}\n", ""))
    assert msg.endswith(": devices[0]: give address or slot to find the device"), msg


def test_device_found_by_serial_only_is_refused(tmp_path):
    # The NVMe serial is readable only while the nvme driver holds the drive: once the drive is
    # on vfio-pci, as a passed-through device must be, a serial alone could never find it.
    msg = error(tmp_path, edit(NVME1, "serial: S4EWNX0R712345F"))
    assert "devices[0]: give address or slot to find the device: a serial only verifies it" in msg
    assert "readable only while the nvme driver holds the drive" in msg
    assert "vfio-pci" in msg


# --- names, duplicates -------------------------------------------------------------------------

def test_duplicate_device_name(tmp_path):
    msg = error(tmp_path, edit("name: ceph-nvme-2", "name: ceph-nvme-1"))
    assert "devices[1].name: 'ceph-nvme-1' is already used by devices[0]" in msg


def test_disk_named_like_a_device(tmp_path):
    msg = error(tmp_path, edit("name: gluster-hdd-2", "name: ceph-nvme-3"))
    assert "disks[1].name: 'ceph-nvme-3' is already used by devices[2]" in msg


def test_same_address_for_two_vms(tmp_path):
    msg = error(tmp_path, edit('address: "0000:07:00.0"', 'address: "0000:06:00.0"'))
    assert "devices[1]: 0000:06:00.0 is also listed at devices[0]" in msg
    assert "both VM z-ceph-1 and VM z-ceph-2" in msg


def test_same_address_for_a_vm_and_the_host(tmp_path):
    msg = error(tmp_path, edit('address: "0000:09:00.0"', 'address: "0000:08:00.0"'))
    assert "devices[3]: 0000:08:00.0 is also listed at devices[2]" in msg
    assert "both VM z-ceph-3 and the host" in msg


def test_same_address_spelled_two_ways(tmp_path):
    # Short and upper-case forms are normalized before the comparison.
    msg = error(tmp_path, edit('address: "0000:07:00.0"', 'address: "06:00.0"',
                               edit(NVME1, 'address: "0000:06:00.0"')))
    assert "devices[1]: 0000:06:00.0 is also listed at devices[0]" in msg


def test_same_disk_twice(tmp_path):
    msg = error(tmp_path, edit("by_id: wwn-0x5000c500b1c2d3f5", "by_id: wwn-0x5000c500b1c2d3e4"))
    assert "disks[1]: wwn-0x5000c500b1c2d3e4 is also listed at disks[0]" in msg
    assert "both VM z-gluster-1 and VM z-gluster-2" in msg


@pytest.mark.parametrize("by_id", ["/dev/disk/by-id/wwn-0x5000c500b1c2d3f5", "by-id/wwn-0x5000c500b1c2d3f5"])
def test_by_id_with_a_slash(tmp_path, by_id):
    msg = error(tmp_path, edit("by_id: wwn-0x5000c500b1c2d3f5", f"by_id: {by_id}"))
    assert f"disks[1].by_id: {by_id!r} is not valid" in msg
    assert "no '/'" in msg


# --- vm / host ---------------------------------------------------------------------------------

def test_device_with_vm_and_host(tmp_path):
    msg = error(tmp_path, edit("    vm: z-ceph-2", "    vm: z-ceph-2\n    host: true"))
    assert "devices[1]: give either vm: <libvirt domain> (pass it through) or host: true" in msg


def test_device_with_neither_vm_nor_host(tmp_path):
    msg = error(tmp_path, edit("    vm: z-ceph-2\n", ""))
    assert "devices[1]: give either vm:" in msg
    assert "devices[3]: give either vm:" in error(tmp_path, edit("    host: true\n", ""))


@pytest.mark.parametrize("vm, shown", [
    ('"z-ceph\\x01"', "'z-ceph\\x01'"),
    ('"z-ceph\\t2"', "'z-ceph\\t2'"),
    ('"z-ceph\\n2"', "'z-ceph\\n2'"),  # a newline must not break the one-line message
    ('"z/ceph-2"', "'z/ceph-2'"),
    ('""', "''"),
])
def test_bad_vm_name(tmp_path, vm, shown):
    msg = error(tmp_path, edit("vm: z-ceph-2", f"vm: {vm}"))
    assert f"devices[1].vm: {shown} is not valid: a libvirt domain name" in msg


def test_vm_name_with_spaces_and_unicode_is_allowed(tmp_path):
    p = load(tmp_path, edit("vm: z-ceph-2", 'vm: "Ceph OSD 2 – prod"'))
    assert p.devices[1].vm == "Ceph OSD 2 – prod"


# --- YAML itself, files ------------------------------------------------------------------------

def test_duplicate_yaml_key_in_a_device(tmp_path):
    # YAML would silently keep the last value; the loader refuses instead.
    text = edit("    vm: z-ceph-2\n", "    vm: z-ceph-2\n    vm: z-ceph-1\n")
    line = text.splitlines().index("    vm: z-ceph-2") + 2  # 1-based line of the second vm:
    msg = error(tmp_path, text)
    assert msg.endswith(f": line {line}: duplicate key 'vm'"), msg


def test_duplicate_top_level_key(tmp_path):
    text = BUNDLED + "\ndevices: []\n"
    msg = error(tmp_path, text)
    assert f"line {len(text.splitlines())}: duplicate key 'devices'" in msg


@pytest.mark.parametrize("key, kind", [("[vm, name]", "sequence"), ("{vm: 1}", "mapping")])
def test_key_that_is_not_a_plain_name(tmp_path, key, kind):
    # A list as a key used to crash the duplicate-key check (unhashable).
    text = edit("    vm: z-ceph-2\n", f"    vm: z-ceph-2\n    ? {key}\n    : 1\n")
    line = text.splitlines().index("    vm: z-ceph-2") + 2
    assert error(tmp_path, text).endswith(f": line {line}: a key must be a plain name, not a {kind}")


@pytest.mark.parametrize("use", ["  vm: *vm\n", "  <<: *dev\n"])
def test_yaml_aliases_are_refused(tmp_path, use):
    # Refused before expansion: nested aliases ("billion laughs") would exhaust memory.
    text = edit("    vm: z-ceph-2\n", "    vm: &vm z-ceph-2\n").replace("devices:\n  - ", "devices:\n  - &dev\n    ", 1)
    text += "extra:\n" + use
    msg = error(tmp_path, text)
    anchor = "vm" if "*vm" in use else "dev"
    assert f": YAML alias *{anchor} is not allowed in a profile; write the value out" in msg, msg


@pytest.mark.parametrize("section", ["severity", "waivers"])
def test_facts_gathered_is_always_required(tmp_path, section):
    if section == "severity":
        text, where = edit("vfio-ids-scope: required", "facts-gathered: recommended"), "severity.facts-gathered"
    else:
        text = edit("waivers: []", "waivers:\n  - requirement: facts-gathered\n    reason: lab host\n"
                                   "    expires: 2099-01-31\n    approved_by: j.doe")
        where = "waivers[0].requirement"
    assert f": {where}: cannot be downgraded or waived" in error(tmp_path, text)


def test_invalid_yaml(tmp_path):
    text = edit('    id: "144d:a808"\n    vm: z-ceph-2', '    id: "144d:a808\n    vm: z-ceph-2')
    msg = error(tmp_path, text)
    assert "not valid YAML" in msg
    assert ": line " in msg


def test_tab_indentation(tmp_path):
    msg = error(tmp_path, edit("    vm: z-ceph-2", "\tvm: z-ceph-2"))
    assert "not valid YAML" in msg


@pytest.mark.parametrize("text", ["", "\n\n", "# profile to be written\n", "---\n"])
def test_empty_file(tmp_path, text):
    assert error(tmp_path, text).endswith(": (top): the profile is empty")


def test_not_a_mapping(tmp_path):
    assert "(top): expected a mapping, got ['dl360-gen9']" in error(tmp_path, "- dl360-gen9\n")


def test_missing_profile_by_name_lists_bundled():
    with pytest.raises(ProfileError) as exc_info:
        profiles.load("dl380-gen10", PROFILES)
    msg = str(exc_info.value)
    assert "\n" not in msg
    assert msg.startswith(f"{PROFILES / 'dl380-gen10.yaml'}: no such profile")
    assert "bundled profiles: dl360-gen9" in msg


def test_missing_profile_by_path_lists_bundled(tmp_path):
    missing = tmp_path / "site.yaml"
    with pytest.raises(ProfileError, match=r"site\.yaml: no such profile \(bundled profiles: dl360-gen9;"):
        profiles.load(str(missing), PROFILES)


def test_profile_path_is_a_directory(tmp_path):
    with pytest.raises(ProfileError, match="cannot read it"):
        profiles.load(str(tmp_path), PROFILES)


def test_profile_not_utf8(tmp_path):
    text = edit("description: >", "description: > Stra\xdfe 5, R\xe4ck 3;").encode("latin-1")
    msg = error(tmp_path, text)
    assert "UTF-8" in msg or "utf-8" in msg


# --- severity ----------------------------------------------------------------------------------

def test_severity_override(tmp_path):
    p = load(tmp_path, edit("vfio-ids-scope: required", "vfio-ids-scope: required\n  bound-to-vfio: recommended"))
    assert p.severity_of("bound-to-vfio") == "recommended"
    assert p.severity_of("device-present") == "required"


def test_severity_unknown_requirement(tmp_path):
    msg = error(tmp_path, edit("vfio-ids-scope: required", "vfio-id-scope: required"))
    assert "severity.vfio-id-scope: unknown key (allowed: " in msg
    assert "vfio-ids-scope" in msg.split("allowed:")[1]


@pytest.mark.parametrize("value, shown", [("optional", "'optional'"), ("Required", "'Required'"),
                                          ("true", "True"), ("1", "1")])
def test_bad_severity_value(tmp_path, value, shown):
    msg = error(tmp_path, edit("vfio-ids-scope: required", f"vfio-ids-scope: {value}"))
    assert f"severity.vfio-ids-scope: {shown} is not one of: required, recommended" in msg


# --- waivers -----------------------------------------------------------------------------------

def test_waiver_loads(tmp_path):
    p = load(tmp_path, with_waiver())
    [w] = p.waivers
    assert (w.requirement, w.device, w.host) == ("bound-to-vfio", "ceph-nvme-1", None)
    assert w.expires == datetime.date(2099, 1, 31)
    assert w.reason == "RMA case 5501 open"
    assert w.approved_by == "j.doe (change CHG-1234)"


def test_waiver_quoted_date_and_disk_subject(tmp_path):
    p = load(tmp_path, with_waiver("disk-not-used-by-host", "gluster-hdd-2", expires='"2099-01-31"'))
    assert p.waivers[0].expires == datetime.date(2099, 1, 31)
    assert p.waivers[0].device == "gluster-hdd-2"


def test_waiver_unknown_requirement(tmp_path):
    msg = error(tmp_path, with_waiver(requirement="bound-to-vifo"))
    assert "waivers[0].requirement: 'bound-to-vifo' is not a requirement" in msg


def test_waiver_unknown_device(tmp_path):
    msg = error(tmp_path, with_waiver(device="ceph-nvme-9"))
    assert "waivers[0].device: 'ceph-nvme-9' is not a device or disk named in this profile" in msg


@pytest.mark.parametrize("reason", ['""', '"   "'])
def test_waiver_empty_reason(tmp_path, reason):
    assert "waivers[0].reason: a waiver needs a reason" in error(tmp_path, with_waiver(reason=reason))


def test_waiver_missing_reason(tmp_path):
    assert "waivers[0].reason: expected a string, got None" in error(tmp_path, with_waiver(reason=""))


@pytest.mark.parametrize("expires, shown", [
    ('"2099-13-01"', "'2099-13-01'"),
    ("next quarter", "'next quarter'"),
    ('"31.01.2099"', "'31.01.2099'"),
])
def test_waiver_bad_date(tmp_path, expires, shown):
    msg = error(tmp_path, with_waiver(expires=expires))
    assert f"waivers[0].expires: {shown} is not a date (YYYY-MM-DD)" in msg


def test_waiver_bad_unquoted_date(tmp_path):
    msg = error(tmp_path, with_waiver(expires="2099-13-01"))
    assert "2099-13-01" in msg


@pytest.mark.parametrize("expires", ["2099-01-31 12:00:00", "2099-01-31T12:00:00Z", '"2099-01-31 12:00"'])
def test_waiver_expiry_with_a_time(tmp_path, expires):
    # A waiver lasts whole days: a time (in which time zone?) is refused, not silently dropped.
    msg = error(tmp_path, with_waiver(expires=expires))
    shown = repr(expires.strip('"'))
    assert f"waivers[0].expires: {shown} is not a date (YYYY-MM-DD)" in msg


def test_waiver_for_the_whole_requirement_has_no_device(tmp_path):
    text = edit("    device: ceph-nvme-1\n", "", with_waiver(requirement="firmware-iommu"))
    [w] = load(tmp_path, text).waivers
    assert (w.requirement, w.device) == ("firmware-iommu", None)


@pytest.mark.parametrize("requirement", ["firmware-iommu", "interrupt-remapping", "vfio-ids-scope"])
def test_waiver_naming_a_device_for_a_host_requirement(tmp_path, requirement):
    # Host requirements are checked once per host: a device waiver for one could never apply.
    msg = error(tmp_path, with_waiver(requirement=requirement, device="ceph-nvme-1"))
    assert f"waivers[0].device: {requirement} is checked once per host, not per device or disk" in msg
    assert "'ceph-nvme-1' would never apply: remove device:" in msg


@pytest.mark.parametrize("requirement", ["bound-to-vfio", "device-present", "assigned-to-vm"])
def test_waiver_naming_a_disk_for_a_device_requirement(tmp_path, requirement):
    msg = error(tmp_path, with_waiver(requirement=requirement, device="gluster-hdd-1"))
    assert f"waivers[0].device: 'gluster-hdd-1' is a disk, but {requirement} is checked per PCI device" in msg


@pytest.mark.parametrize("requirement", ["disk-present", "disk-not-used-by-host", "disk-assigned-to-vm"])
def test_waiver_naming_a_device_for_a_disk_requirement(tmp_path, requirement):
    msg = error(tmp_path, with_waiver(requirement=requirement, device="ceph-nvme-1"))
    assert f"waivers[0].device: 'ceph-nvme-1' is a PCI device, but {requirement} is checked per disk" in msg


@pytest.mark.parametrize("requirement, device", [("host-device-kept", "host-nvme-4"),
                                                 ("disk-assigned-to-vm", "gluster-hdd-1")])
def test_waiver_naming_a_subject_of_its_scope(tmp_path, requirement, device):
    [w] = load(tmp_path, with_waiver(requirement=requirement, device=device)).waivers
    assert (w.requirement, w.device) == (requirement, device)
