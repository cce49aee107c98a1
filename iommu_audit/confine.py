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

MAX_LINK_HOPS = 40  # the kernel's limit (ELOOP)
MAX_ENTRIES = 200_000  # a host copy as the README describes holds a few thousand
MAX_FILE_BYTES = 16 * 1024 * 1024  # the probe's cap (CAP in probe.sh); one byte more tells it the file was longer


class ConfineError(Exception):
    """The copy cannot be read as a host copy; the message names the path and what to do."""


def host_path(root: str, parts: list[str], links: dict | None = None) -> list[str] | None:
    """Components of the path `parts` (relative to the copy) fully resolved the way the host would
    resolve it, never above `root`; None for a symlink loop. Every prefix of the result is a real
    directory of the copy, so looking it up never follows anything. `links` caches what each path
    is (its link text, or None) across calls: a host copy's links share most of their paths."""
    links = {} if links is None else links
    out: list[str] = []
    paths = [root.rstrip("/")]  # paths[i]: root joined with out[:i] (built as it goes: os.path.join costs)
    todo = parts[::-1]  # next component last
    hops = 0
    while todo:
        c = todo.pop()
        if c in ("", "."):
            continue
        if c == "..":
            if out:
                out.pop()
                paths.pop()
            continue
        target = _link_text_of(f"{paths[-1]}/{c}", links)
        if target is not None:
            hops += 1
            if hops > MAX_LINK_HOPS:
                return None
            if target.startswith("/"):
                out, paths = [], paths[:1]
            todo += target.split("/")[::-1]
        else:
            out.append(c)
            paths.append(f"{paths[-1]}/{c}")
    return out


def _link_text_of(path: str, links: dict) -> str | None:
    if path not in links:
        try:
            links[path] = os.readlink(path)
        except OSError:  # not a link (or not there): a plain component
            links[path] = None
    return links[path]


def _text_is_faithful(root: str, link_parts: list[str], target: str, resolved: list[str], links: dict) -> bool:
    """The link's own text leads, followed naively, where the host would go: keep it."""
    if target.startswith("/"):
        return False
    depth = len(link_parts) - 1
    for c in target.split("/"):
        depth += -1 if c == ".." else 0 if c in ("", ".") else 1
        if depth < 0:  # climbs above the copy's root, even if it comes back down
            return False
    # Where the kernel would take it (absolute targets from this machine's /): host_path from "/".
    return host_path("/", [*root.split("/"), *link_parts], links) == [*root.split("/")[1:], *resolved]


def build(root: str, view: str) -> None:
    """Fill the empty directory `view` with the confined view of the host copy at `root`."""
    root = os.path.realpath(root)
    if not os.path.isdir(root):
        raise ConfineError(f"{root}: not a directory")
    entries = 0
    links: dict = {}
    umask = _umask()
    modes = []  # (path, mode) the umask changed or a directory lacks rwx for us: applied last, so an
    # unreadable directory stays unreadable in the view
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
                os.symlink(_link_text(root, view, parts, os.readlink(e.path), links), dest)
            elif stat.S_ISDIR(st.st_mode):
                mode = stat.S_IMODE(st.st_mode) & 0o777
                os.mkdir(dest, mode | 0o700)
                todo.append(parts)
                if umask is None or (mode | 0o700) & ~umask != mode:
                    modes.append((dest, mode))
            elif stat.S_ISREG(st.st_mode):
                mode = stat.S_IMODE(st.st_mode) & 0o777
                _copy_capped(e.path, dest, mode)
                if umask is None or mode & ~umask != mode:
                    modes.append((dest, mode))
    for path, mode in reversed(modes):
        if os.path.lexists(path):
            os.chmod(path, mode)


def _umask() -> int | None:
    """This process's umask, read without changing it (Linux 4.7+), or None."""
    try:
        with open("/proc/self/status") as f:
            return next((int(line.split()[1], 8) for line in f if line.startswith("Umask:")), None)
    except (OSError, ValueError):
        return None


def _link_text(root: str, view: str, parts: list[str], target: str, links: dict) -> str:
    resolved = host_path(root, parts, links)
    if resolved is None:
        return parts[-1]  # a loop stays a loop (ELOOP), pointing nowhere else
    if _text_is_faithful(root, parts, target, resolved, links):
        return target
    return os.path.relpath(os.path.join(view, *resolved), os.path.join(view, *parts[:-1]))


def _copy_capped(src: str, dest: str, mode: int) -> None:
    # os-level calls: a host copy holds thousands of small files, and buffered file objects cost more than the copy.
    try:
        fd = os.open(src, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        os.close(os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode))  # there but unreadable, as on the host
        return
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):  # swapped for a FIFO since the listing
            return
        chunks, left = [], MAX_FILE_BYTES + 1
        while left and (chunk := os.read(fd, min(left, 1 << 20))):
            chunks.append(chunk)
            left -= len(chunk)
    finally:
        os.close(fd)
    out = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)  # writable fd even for a read-only mode
    try:
        data = memoryview(b"".join(chunks))
        while data:
            data = data[os.write(out, data):]
    finally:
        os.close(out)
