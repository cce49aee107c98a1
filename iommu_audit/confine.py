"""An offline host copy, confined: what the probe reads of a --sysroot never lies outside it.

A copy from a customer may hold a symlink to an absolute path or "../.." beyond the copy;
followed as they are, the auditing machine's own files would end up in the facts, the
report and --save-facts. The probe therefore reads a private view of the copy: the same
tree, where every link points where the host itself would resolve it (an absolute target
is relative to the copy's root, ".." stops at the root), regular files are copied up to
a size cap, and FIFOs, sockets and device nodes are left out (reading them hangs or never
ends). Links that already resolve the host's way keep their text, so the probe sees the
same readlink output as on the host.
"""

import os
import stat
from pathlib import Path

MAX_LINK_HOPS = 40  # the kernel's limit (ELOOP)
MAX_ENTRIES = 200_000  # a host copy as the README describes holds a few thousand
MAX_FILE_BYTES = 16 * 1024 * 1024  # the probe's cap (CAP in probe.sh); one byte more tells it the file was longer


class ConfineError(Exception):
    """The copy cannot be read as a host copy; the message names the path and what to do."""


def host_path(root: str, parts: list[str]) -> list[str] | None:
    """Components of the path `parts` (relative to the copy) fully resolved the way the host would
    resolve it, never above `root`; None for a symlink loop. Every prefix of the result is a real
    directory of the copy, so looking it up never follows anything."""
    out: list[str] = []
    todo = list(parts)
    hops = 0
    while todo:
        c = todo.pop(0)
        if c in ("", "."):
            continue
        if c == "..":
            if out:
                out.pop()
            continue
        full = os.path.join(root, *out, c)
        if os.path.islink(full):
            hops += 1
            if hops > MAX_LINK_HOPS:
                return None
            target = os.readlink(full)
            if target.startswith("/"):
                out = []
            todo = target.split("/") + todo
        else:
            out.append(c)
    return out


def _text_is_faithful(root: str, link_parts: list[str], target: str, resolved: list[str]) -> bool:
    """The link's own text leads, followed naively, where the host would go: keep it."""
    if target.startswith("/"):
        return False
    depth = len(link_parts) - 1
    for c in target.split("/"):
        depth += -1 if c == ".." else 0 if c in ("", ".") else 1
        if depth < 0:  # climbs above the copy's root, even if it comes back down
            return False
    return os.path.realpath(os.path.join(root, *link_parts)) == os.path.join(root, *resolved)


def build(root: str, view: str) -> None:
    """Fill the empty directory `view` with the confined view of the host copy at `root`."""
    root = os.path.realpath(root)
    if not os.path.isdir(root):
        raise ConfineError(f"{root}: not a directory")
    entries = 0
    modes = []  # (path, mode): applied last, so an unreadable directory stays unreadable in the view
    todo = [[]]  # directories to copy, as components relative to root
    while todo:
        rel = todo.pop()
        try:
            listing = sorted(os.scandir(os.path.join(root, *rel)), key=lambda e: e.name)
        except OSError:
            continue  # unreadable directory: empty, and unreadable once its mode is copied
        for e in listing:
            entries += 1
            if entries > MAX_ENTRIES:
                raise ConfineError(f"{root}: more than {MAX_ENTRIES} files; copy only the paths the README's "
                                   "'Sysroot layout' lists")
            parts = [*rel, e.name]
            dest = os.path.join(view, *parts)
            st = e.stat(follow_symlinks=False)
            if stat.S_ISLNK(st.st_mode):
                os.symlink(_link_text(root, view, parts, os.readlink(e.path)), dest)
            elif stat.S_ISDIR(st.st_mode):
                os.mkdir(dest)
                todo.append(parts)
                modes.append((dest, st.st_mode))
            elif stat.S_ISREG(st.st_mode):
                _copy_capped(e.path, dest)
                modes.append((dest, st.st_mode))
    for path, mode in reversed(modes):
        if os.path.lexists(path):
            os.chmod(path, stat.S_IMODE(mode) & 0o777)


def _link_text(root: str, view: str, parts: list[str], target: str) -> str:
    resolved = host_path(root, parts)
    if resolved is None:
        return parts[-1]  # a loop stays a loop (ELOOP), pointing nowhere else
    if _text_is_faithful(root, parts, target, resolved):
        return target
    return os.path.relpath(os.path.join(view, *resolved), os.path.join(view, *parts[:-1]))


def _copy_capped(src: str, dest: str) -> None:
    try:
        fd = os.open(src, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        Path(dest).touch()  # unreadable: there but unreadable (its mode is copied), as on the host
        return
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(fd).st_mode):  # swapped for a FIFO since the listing
            return
        data = f.read(MAX_FILE_BYTES + 1)
    Path(dest).write_bytes(data)
