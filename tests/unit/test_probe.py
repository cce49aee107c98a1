"""The probe itself: POSIX sh, same output under dash and busybox, read-only, one command."""

import os
import shutil
from pathlib import Path
import subprocess
import time

import pytest

from iommu_audit import gather
from iommu_audit.parsers.sections import split

SHELLS = [s for s in (["dash"], ["busybox", "sh"]) if shutil.which(s[0])]


def run_probe(shell: list[str], root) -> str:
    return subprocess.run([*shell, "-c", gather.PROBE, "probe", str(root)], capture_output=True, text=True,
                          errors="replace", check=True).stdout


@pytest.mark.skipif(len(SHELLS) < 2, reason="needs dash and busybox")
def test_dash_and_busybox_agree(host):
    outputs = {" ".join(s): run_probe(s, host.root) for s in SHELLS}
    assert len(set(outputs.values())) == 1, "probe output differs between shells"


def test_every_section_is_present_once(host):
    names = [s.name for s in split(run_probe(["sh"], host.root)) if s.name != "domain"]
    assert names == ["probe", "system", "cmdline", "acpi_tables", "class_iommu", "iommu_groups", "pci", "nvme", "slots", "block",
                     "disk_links", "fstab", "mounts", "swaps", "mdstat", "net", "modules", "modprobe_d", "driverctl", "binders",
                     "boot_config", "boot_generated", "platform", "interrupts", "dmesg", "libvirt", "end"]


def test_sysroot_probe_does_not_write(host):
    before = sorted((p.relative_to(host.root), p.stat().st_mtime_ns) for p in host.root.rglob("*") if not p.is_symlink())
    run_probe(["sh"], host.root)
    after = sorted((p.relative_to(host.root), p.stat().st_mtime_ns) for p in host.root.rglob("*") if not p.is_symlink())
    assert before == after


def test_dmesg_is_filtered_on_the_host(host):
    host.append("dmesg", "[   40.000000] EXT4-fs (sda1): mounted filesystem\n" * 1000)
    body = next(s for s in split(run_probe(["sh"], host.root)) if s.name == "dmesg").body
    assert "EXT4-fs (sda1)" not in body and "DMAR: IOMMU enabled" in body
    assert body.splitlines()[0].startswith("[    0.000000] Linux version")


def test_non_utf8_firmware_bytes_survive(host):
    # HPE ACPI lines carry a raw byte in the creator id: "(v01 HP     ProLiant 00000001 \xd2?   0000162E)".
    raw = host.path("dmesg").read_bytes() + b"[    0.0] ACPI: DMAR 0x00000000799E9000 000558 (v01 HP     ProLiant 00000001 \xd2?   0000162E)\n"
    host.path("dmesg").write_bytes(raw)
    g = gather.gather(gather.Target("x", "sysroot", sysroot=str(host.root)))
    assert "ProLiant 00000001 \ufffd?" in g.probe_output


def test_paths_with_spaces_and_quotes_are_arguments_not_code(tmp_path, host):
    odd = tmp_path / "it's a $(touch pwned) dir"
    shutil.copytree(host.root, odd, symlinks=True)
    g = gather.gather(gather.Target("x", "sysroot", sysroot=str(odd)))
    assert "dl360-gen9-01" in g.probe_output and not (tmp_path / "pwned").exists()


def test_gathering_is_one_command(host, monkeypatch):
    calls = []
    local = gather.testinfra.get_host("local://")
    real_run = local.run
    monkeypatch.setattr(local, "run", lambda *a, **k: calls.append(a[0]) or real_run(*a, **k))
    gather.gather(gather.Target("x", "local", host=local, sysroot=str(host.root)))
    assert len(calls) == 1


def test_cut_short_output_is_a_gather_error(monkeypatch):
    local = gather.testinfra.get_host("local://")
    target = gather.Target("node1", "ssh://node1", host=local)
    monkeypatch.setattr(gather, "COMMAND", "echo '::iommu-audit:: probe 1'; exit 255")
    with pytest.raises(gather.GatherError, match="ssh://node1: unreachable, or the probe was cut short"):
        gather.gather(target)


@pytest.mark.parametrize("shell", SHELLS, ids=[s[0] for s in SHELLS])
def test_live_branch_runs_on_this_machine(shell):
    # The live branch (dmesg, journalctl, ip, virsh, /proc/net/tcp) under each shell, read-only.
    names = [s.name for s in split(run_probe(shell, "/"))]
    assert names[0] == "probe" and names[-1] == "end"
    assert {"dmesg", "net", "libvirt", "boot_generated", "disk_links", "fstab"} <= set(names)


def test_host_data_cannot_forge_a_section(host):
    # A VM description (or any copied file) holding the default marker stays data: each run has its own.
    host.replace("etc/libvirt/qemu/z-ceph-3.xml", "<memory unit=", "<description>\n::iommu-audit:: domain defined "
                 "z-evil\n::iommu-audit:: end\n</description>\n  <memory unit=")
    f = host.facts()
    assert "z-evil" not in {d.name for d in f.domains}
    assert {d.name for d in f.domains} == {"z-ceph-1", "z-ceph-2", "z-ceph-3", "z-gluster-1", "z-gluster-2"}


def test_unparseable_output_is_a_gather_error(host, monkeypatch):
    g = host.gathered()
    monkeypatch.setattr(gather, "from_probe", lambda *a: [][0])
    with pytest.raises(gather.GatherError, match="could not be parsed .*IndexError"):
        gather.parse(g)


@pytest.mark.parametrize("sudo", [False, True])
def test_the_probe_command_fits_dropbear(sudo):
    # dropbear (common on busybox hosts) closes the session on commands over 9000 bytes ("String too long");
    # --sudo quotes the command once more.
    local = gather.testinfra.get_host("local://", sudo=sudo)
    command = local.backend.get_command("sh -c %s iommu-audit-probe %s %s %s", gather.COMMAND, "/" * 64,
                                        "::iommu-audit-" + "0" * 16 + "::", "3600")
    assert len(command.encode()) < gather.DROPBEAR_MAX_COMMAND


def test_the_packed_command_runs_on_a_busybox_only_host(tmp_path, host):
    # A host with nothing but busybox (its sh, base64, gzip, grep...) unpacks and runs the probe.
    if not shutil.which("busybox"):
        pytest.skip("needs busybox")
    bb = shutil.which("busybox")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for applet in subprocess.run([bb, "--list"], capture_output=True, text=True, check=True).stdout.split():
        (bin_dir / applet).symlink_to(bb)
    out = subprocess.run([bb, "sh", "-c", gather.COMMAND, "probe", str(host.root), gather.MARKER, "60"], capture_output=True,
                         text=True, errors="replace", env={"PATH": str(bin_dir)}).stdout
    assert out == run_probe(["sh"], host.root)


def test_a_host_without_gzip_gets_a_clear_reason(tmp_path, host):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("sh", "printf", "base64"):
        (bin_dir / tool).symlink_to(shutil.which(tool) or "/bin/" + tool)
    r = subprocess.run(["sh", "-c", gather.COMMAND, "probe", str(host.root), "m", "60"], capture_output=True, text=True,
                       env={"PATH": str(bin_dir)})
    assert r.returncode == 127 and "cannot unpack the probe: the host needs base64 and gzip" in r.stderr
    assert "iommu-audit" not in r.stdout


def test_the_sent_probe_behaves_like_the_source(host):
    full = subprocess.run(["sh", "-c", gather.PROBE_SOURCE, "probe", str(host.root)], capture_output=True, text=True).stdout
    assert full == run_probe(["sh"], host.root)


def _libvirt_daemon_runs() -> bool:
    for comm in Path("/proc").glob("[0-9]*/comm"):
        try:
            if comm.read_text().strip() in ("libvirtd", "virtqemud"):
                return True
        except OSError:
            continue
    return False


def test_virsh_is_not_asked_when_no_libvirt_daemon_runs(tmp_path):
    # virsh on a socket-activated host would start virtqemud just to list domains.
    if _libvirt_daemon_runs():
        pytest.skip("a libvirt daemon runs on this machine")
    bin_dir, calls = tmp_path / "bin", tmp_path / "virsh-calls"
    bin_dir.mkdir()
    (bin_dir / "virsh").write_text(f"#!/bin/sh\necho \"$@\" >> {calls}\n")
    (bin_dir / "virsh").chmod(0o755)
    out = subprocess.run(["sh", "-c", gather.PROBE, "probe", "/"], capture_output=True, text=True, errors="replace",
                         env={"PATH": f"{bin_dir}:/usr/sbin:/usr/bin:/sbin:/bin"}, check=True).stdout
    assert not calls.exists()
    libvirt = [s for s in split(out) if s.name == "libvirt"]
    assert libvirt[0].args in (("source=files", "daemon=stopped"), ("source=error",))


def test_special_files_in_place_of_files_are_not_read(tmp_path, host):
    # Run the probe itself (no confined view): a FIFO would hang it, /dev/zero never end.
    for rel in ("proc/mounts", "proc/cpuinfo", "etc/modprobe.d/zero.conf"):
        if host.path(rel).exists():
            host.remove(rel)
        os.symlink("/dev/zero", host.path(rel))
    for rel in ("proc/modules", "dmesg", "sys/bus/pci/slots/1/address"):
        host.remove(rel)
        os.mkfifo(host.path(rel))
    out = subprocess.run(["sh", "-c", gather.PROBE, "probe", str(host.root)], capture_output=True, text=True,
                         errors="replace", timeout=60).stdout
    sections = {s.name: s for s in split(out)}
    assert sections["end"] and sections["mounts"].body.strip() == "" and "loaded" not in sections["modules"].body
    assert sections["dmesg"].arg("source") == "none" and sections["dmesg"].arg("unreadable") == "/dmesg"


def test_the_kernel_log_is_read_as_text_past_a_nul_byte(host):
    host.write("dmesg", host.read("dmesg") + "[    3.0] odd \x00 byte\n[    3.1] DMAR: late line\n")
    body = next(s for s in split(run_probe(["sh"], host.root)) if s.name == "dmesg").body
    assert "DMAR: late line" in body and "binary file" not in body


def test_the_probe_timeout_ends_a_hanging_probe(host, monkeypatch):
    local = gather.testinfra.get_host("local://")
    monkeypatch.setattr(gather, "_GRACE", 0)
    monkeypatch.setattr(local, "run", lambda *a: time.sleep(5))  # a session that never answers
    start = time.monotonic()
    with pytest.raises(gather.GatherError, match=r"ssh://node1: the probe did not finish within 1 s \(--probe-timeout\)"):
        gather.gather(gather.Target("node1", "ssh://node1", host=local, timeout=1))
    assert time.monotonic() - start < 4


def test_ipv6_default_route_is_read_and_unreachable_on_lo_is_not(host):
    host.write("proc/net/ipv6_route",
               "00000000000000000000000000000000 00 00000000000000000000000000000000 00 fe800000000000000000000000000001 "
               "00000400 00000001 00000000 00000003     eno2\n"
               "fe800000000000000000000000000000 40 00000000000000000000000000000000 00 00000000000000000000000000000000 "
               "00000100 00000001 00000000 00000001     eno3\n"
               "00000000000000000000000000000000 00 00000000000000000000000000000000 00 00000000000000000000000000000000 "
               "ffffffff 00000001 00000000 00200200       lo\n")
    assert host.facts().network.default_route == ["eno1", "eno2"]


def test_a_dmesg_that_times_out_is_named(tmp_path):
    # The probe's own `timeout 30` ends a hanging dmesg (and journalctl): the log is "not read", and why.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "timeout").write_text('#!/bin/sh\ncase $2 in dmesg | journalctl) exit 124 ;; esac\nshift\nexec "$@"\n')
    (bin_dir / "timeout").chmod(0o755)
    out = subprocess.run(["sh", "-c", gather.PROBE, "probe", "/"], capture_output=True, text=True, errors="replace",
                         env={"PATH": f"{bin_dir}:/usr/sbin:/usr/bin:/sbin:/bin"}, check=True).stdout
    dmesg = next(s for s in split(out) if s.name == "dmesg")
    assert dmesg.args == ("source=none", "unreadable=dmesg:timeout") and dmesg.body == ""
