"""virsh for a guest: the guest's /usr/sbin/virsh relays its arguments (and the files they name)
through a QEMU guestfwd connection to this script, which runs the real virsh against the
private libvirtd and sends back its exit code, stdout and stderr.

So a guest playing a KVM host has a real libvirt behind `virsh` (define, dumpxml,
attach-device --config, ...) without libvirt inside the initramfs. QEMU starts this script
once per connection (`guestfwd=tcp:10.0.2.100:5000-cmd:python3 virsh_relay.py URI`).
"""
import base64
import subprocess
import sys
import tempfile
from pathlib import Path

ADDRESS, PORT = "10.0.2.100", 5000

GUEST_SHIM = r"""#!/bin/sh
# e2e harness: virsh runs on the test machine against its private libvirtd (see virsh_relay.py).
b() { printf '%s' "$1" | base64 | tr -d '\n'; }
req() {
	for a in "$@"; do
		printf 'A %s\n' "$(b "$a")"
		[ -f "$a" ] && printf 'F %s %s\n' "$(b "$a")" "$(base64 < "$a" | tr -d '\n')"
	done
	echo E
}
resp=$(req "$@" | nc 10.0.2.100 5000) || { echo "virsh relay unreachable" >&2; exit 1; }
printf '%s\n' "$resp" | sed -n 2p | base64 -d
printf '%s\n' "$resp" | sed -n 3p | base64 -d >&2
exit "$(printf '%s\n' "$resp" | sed -n 1p)"
"""


def guestfwd(uri: str) -> str:
    """The -netdev user guestfwd rule that starts this relay for each guest connection."""
    return f"tcp:{ADDRESS}:{PORT}-cmd:{sys.executable} {Path(__file__).resolve()} {uri}"


def _d(text: str) -> str:
    return base64.b64decode(text).decode()


def _without_connect(args: list[str]) -> list[str]:
    out, skip = [], False
    for a in args:
        if skip:
            skip = False
        elif a in ("-c", "--connect"):
            skip = True
        elif not a.startswith("--connect="):
            out.append(a)
    return out


def main(uri: str) -> None:
    args, files = [], {}
    for line in sys.stdin.buffer:
        kind, *rest = line.decode().rstrip("\n").split(" ")
        if kind == "E":
            break
        if kind == "A":
            args.append(_d(rest[0]) if rest and rest[0] else "")
        elif kind == "F":
            files[_d(rest[0])] = base64.b64decode(rest[1] if len(rest) > 1 else "")
    args = _without_connect(args)  # the guest's "-c qemu:///system" must never reach this machine's libvirtd
    with tempfile.TemporaryDirectory() as tmp:
        for i, a in enumerate(args):
            if a in files:
                copy = Path(tmp) / f"arg{i}"
                copy.write_bytes(files[a])
                args[i] = str(copy)
        r = subprocess.run(["virsh", "-c", uri, *args], capture_output=True, timeout=120)
    out = sys.stdout.buffer
    out.write(f"{r.returncode}\n".encode() + base64.b64encode(r.stdout) + b"\n" + base64.b64encode(r.stderr) + b"\n")
    out.flush()


if __name__ == "__main__":
    main(sys.argv[1])
