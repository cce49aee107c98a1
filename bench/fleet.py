"""Benchmark: a fleet audited over real SSH, serial and with -n, against naive checks and virt-host-validate.

    python bench/fleet.py                    # 1, 8 and 32 hosts, -n 2
    python bench/fleet.py --hosts 1,8 --workers 2 --json bench.json

Each host is a dropbear SSH endpoint on 127.0.0.1 serving its own copy of the sample host
(samples/dl360-gen9-01 with its own hostname): a forced command runs what the client sends and
points the probe's root at that copy, so every host answers like a separate DL360. dropbear runs
in a private mount namespace whose /root is a tmpfs holding the benchmark's authorized_keys:
this machine's /root, /etc and sshd are not touched. Needs root, dropbear, ssh and unshare.

For each fleet size it measures, wall time:
  audit        pytest --profile=dl360-gen9 --hosts=ssh://... (serial, then -n WORKERS)
  naive        the same checks (one test item per audit item), one testinfra call per assertion
  validate     `virt-host-validate qemu` over SSH on each host, one after the other (libvirt's own
               host check; it reads this machine's /proc and /sys, since it cannot be pointed at a copy)
and the SSH commands each host received (round trips), counted by the forced command.
"""

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "samples" / "dl360-gen9-01"
PYTEST = [sys.executable, "-m", "pytest", "-q", "-p", "no:randomly", "-p", "no:cacheprovider"]

# The forced command of every endpoint: count the command, point the probe's root at this copy.
SERVE = r"""copy=$1
echo x >> "$copy.commands"
cmd=$SSH_ORIGINAL_COMMAND
case $cmd in *" iommu-audit-probe / "*) cmd=$(printf '%s' "$cmd" | sed "s| iommu-audit-probe / | iommu-audit-probe $copy |");; esac
exec sh -c "$cmd"
"""

# One testinfra call per assertion: what each audit check would read, as one command on the host copy.
NAIVE_TEST = r'''
import json, os, pytest
SPEC = json.loads(open(os.environ["BENCH_NAIVE"]).read())

@pytest.mark.parametrize("command", [c for _, c in SPEC["items"]], ids=[i for i, _ in SPEC["items"]])
def test_naive(host, command):
    root = SPEC["roots"][host.backend.get_hostname()]
    assert host.run(command.replace("{root}", root)).rc in (0, 1)
'''


def naive_command(test_id: str, profile: dict) -> str:
    """The single file a check about test_id would read (the fewest round trips a per-assertion check needs)."""
    name = test_id.split("::")[-1].split("[")[0]
    subject = test_id.split("[", 1)[1].rstrip("]").split("-", 1)[-1] if "[" in test_id else ""
    dev = next((d for d in profile["devices"] if subject == d["name"]), None)
    disk = next((d for d in profile["disks"] if subject == d["name"]), None)
    if dev:
        if name == "test_assigned_to_vm":
            return "cat {root}/etc/libvirt/qemu/" + dev["vm"] + ".xml"
        return "readlink {root}/sys/bus/pci/devices/" + dev["address"] + "/driver"
    if disk:
        if name == "test_disk_assigned_to_vm":
            return "cat {root}/etc/libvirt/qemu/" + disk["vm"] + ".xml"
        return "readlink {root}/dev/disk/by-id/" + disk["by_id"]
    return {"test_firmware_iommu": "ls {root}/sys/firmware/acpi/tables", "test_cmdline_persistent":
            "cat {root}/etc/default/grub", "test_iommu_active": "ls {root}/sys/kernel/iommu_groups",
            "test_interrupt_remapping": "grep -c IR- {root}/proc/interrupts", "test_vfio_modules":
            "cat {root}/proc/modules", "test_no_known_blockers": "grep -i dmar {root}/dmesg",
            "test_facts_gathered": "uname -r"}.get(name, "cat {root}/proc/cmdline")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Endpoints:
    """n dropbear endpoints on 127.0.0.1, each serving its own host copy."""

    def __init__(self, work: Path, n: int):
        self.work, self.n = work, n
        self.names = [f"bench-{i + 1:02d}" for i in range(n)]
        self.copies = {name: work / name for name in self.names}
        self.ports = {name: free_port() for name in self.names}
        self.proc = None

    def __enter__(self):
        w = self.work
        for name, copy in self.copies.items():
            shutil.copytree(SAMPLE, copy, symlinks=True)
            (copy / "proc/sys/kernel/hostname").write_text(name + "\n")
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(w / "id")], check=True)
        subprocess.run(["dropbearkey", "-t", "ed25519", "-f", str(w / "hostkey")], check=True, capture_output=True)
        (w / "serve.sh").write_text(SERVE)
        (w / "ssh_config").write_text("".join(
            f"Host {name}\n  HostName 127.0.0.1\n  Port {port}\n  User root\n  IdentityFile {w / 'id'}\n"
            "  IdentitiesOnly yes\n  BatchMode yes\n  StrictHostKeyChecking no\n  UserKnownHostsFile /dev/null\n"
            "  LogLevel ERROR\n" for name, port in self.ports.items()))
        starts = " ".join(
            f"dropbear -F -E -s -m -j -k -p 127.0.0.1:{port} -r {w / 'hostkey'} -P {w / name}.pid "
            f"-c 'sh {w / 'serve.sh'} {self.copies[name]}' 2>>{w / name}.log &"
            for name, port in self.ports.items())
        script = (f"mount -t tmpfs -o mode=700 bench-root /root && mkdir -m 700 /root/.ssh && "
                  f"cp {w / 'id.pub'} /root/.ssh/authorized_keys && chmod 600 /root/.ssh/authorized_keys && "
                  f"{starts} wait")
        self.proc = subprocess.Popen(["unshare", "-m", "--propagation", "private", "sh", "-c", script],
                                     start_new_session=True)
        deadline = time.monotonic() + 30
        for port in self.ports.values():
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise SystemExit(f"dropbear on port {port} did not start; see {w}/*.log")
                    time.sleep(0.1)
        return self

    def __exit__(self, *exc):
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)  # our own session: unshare, sh, the dropbears
            self.proc.wait(timeout=10)

    def reset_counts(self) -> None:
        for copy in self.copies.values():
            Path(f"{copy}.commands").write_text("")

    def counts(self) -> list[int]:
        return [len(Path(f"{c}.commands").read_text().splitlines()) for c in self.copies.values()]

    def hosts_arg(self) -> list[str]:
        return [f"--hosts={','.join('ssh://' + n for n in self.names)}", f"--ssh-config={self.work / 'ssh_config'}"]


def timed(cmd: list[str], env: dict | None = None) -> tuple[float, subprocess.CompletedProcess]:
    t0 = time.monotonic()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env={**os.environ, **(env or {})})
    return time.monotonic() - t0, proc


def measure(n: int, workers: int, work: Path) -> dict:
    import yaml
    profile = yaml.safe_load((ROOT / "profiles/dl360-gen9.yaml").read_text())
    items = [line for line in timed(PYTEST + ["--profile=dl360-gen9", f"--sysroot={SAMPLE}", "--co"])[1]
             .stdout.splitlines() if "::" in line]
    row = {"hosts": n, "checks_per_host": len(items)}
    with Endpoints(work, n) as ep:
        for label, extra in (("audit_serial", []), (f"audit_n{workers}", ["-n", str(workers)])):
            ep.reset_counts()
            secs, proc = timed(PYTEST + ["--profile=dl360-gen9", *ep.hosts_arg(), *extra])
            if proc.returncode != 0:
                raise SystemExit(f"{label} with {n} hosts failed (rc {proc.returncode}):\n{proc.stdout[-3000:]}")
            row[label] = round(secs, 2)
            row[f"{label}_round_trips_per_host"] = sorted(set(ep.counts()))
        spec = work / "naive.json"
        spec.write_text(json.dumps({"items": [[i.split("::")[-1], naive_command(i, profile)] for i in items],
                                    "roots": {name: str(c) for name, c in ep.copies.items()}}))
        (work / "test_naive.py").write_text(NAIVE_TEST)
        for label, extra in (("naive_serial", []), (f"naive_n{workers}", ["-n", str(workers)])):
            ep.reset_counts()
            secs, proc = timed(PYTEST + [str(work / "test_naive.py"), f"--rootdir={work}", *ep.hosts_arg(), *extra],
                               env={"BENCH_NAIVE": str(spec)})
            if proc.returncode != 0:
                raise SystemExit(f"{label} with {n} hosts failed:\n{proc.stdout[-3000:]}")
            row[label] = round(secs, 2)
            row[f"{label}_round_trips_per_host"] = sorted(set(ep.counts()))
        if shutil.which("virt-host-validate"):
            t0 = time.monotonic()
            for name in ep.names:
                subprocess.run(["ssh", "-F", str(work / "ssh_config"), name, "virt-host-validate", "qemu"],
                               capture_output=True, text=True)
            row["validate_serial"] = round(time.monotonic() - t0, 2)
    row["naive_over_audit_serial"] = round(row["naive_serial"] / row["audit_serial"], 1)
    row[f"naive_over_audit_n{workers}"] = round(row[f"naive_n{workers}"] / row[f"audit_n{workers}"], 1)
    if "validate_serial" in row:
        row["validate_over_audit_serial"] = round(row["validate_serial"] / row["audit_serial"], 2)
    return row


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--hosts", default="1,8,32", help="fleet sizes, comma separated")
    p.add_argument("--workers", type=int, default=2, help="pytest -n for the parallel runs")
    p.add_argument("--json", help="also write the rows to this file")
    args = p.parse_args()
    missing = [t for t in ("dropbear", "dropbearkey", "ssh", "ssh-keygen", "unshare") if not shutil.which(t)]
    if missing or os.geteuid() != 0:
        print(f"bench/fleet.py needs root and {', '.join(missing) or 'nothing else'}", file=sys.stderr)
        return 2
    rows = []
    for n in [int(x) for x in args.hosts.split(",")]:
        with tempfile.TemporaryDirectory(prefix=f"iommu-audit-bench-{n}-") as tmp:
            rows.append(measure(n, args.workers, Path(tmp)))
        print(json.dumps(rows[-1]), flush=True)
    w = args.workers
    print(f"\n| hosts | checks | audit serial | audit -n {w} | round trips/host | naive serial | naive -n {w} "
          f"| naive round trips/host | naive/audit (serial, -n {w}) | virt-host-validate serial | vhv/audit |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['hosts']} | {r['hosts'] * r['checks_per_host']} | {r['audit_serial']} s | {r[f'audit_n{w}']} s "
              f"| {r['audit_serial_round_trips_per_host']} | {r['naive_serial']} s | {r[f'naive_n{w}']} s "
              f"| {r['naive_serial_round_trips_per_host']} | {r['naive_over_audit_serial']}x, "
              f"{r[f'naive_over_audit_n{w}']}x | {r.get('validate_serial', '-')} s | {r.get('validate_over_audit_serial', '-')}x |")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
