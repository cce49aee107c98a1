"""The kernel-argument edit of the boot configuration, as new file contents (pure, no I/O).

The audit reads /etc/default/grub (+ grub.d/*.cfg, in order) or /etc/kernel/cmdline; this
module computes what those files must hold so the next boot gets the profile's arguments:
wrong arguments are removed wherever they are written, missing ones are added once to the
last GRUB_CMDLINE_LINUX assignment (it applies to every entry, recovery included), and every
other word, quote, comment and $GRUB_CMDLINE_LINUX reference stays as it was.

>>> edit_words('quiet intel_iommu=off "$GRUB_CMDLINE_LINUX"', {"intel_iommu=on"}, ["intel_iommu"])
'quiet "$GRUB_CMDLINE_LINUX" intel_iommu=on'
"""

import re
from dataclasses import dataclass

from iommu_audit.parsers import cmdline
from iommu_audit.profile import Profile

_ASSIGN = re.compile(r"^(\s*(?:export\s+)?)(GRUB_CMDLINE_LINUX(?:_DEFAULT)?)=(.*)$")


@dataclass(frozen=True)
class Edit:
    """What the command line needs: arguments to add, and which arguments to remove."""
    add: tuple[str, ...]
    remove: tuple[str, ...]  # "key" (any value) or "key=value"

    def __bool__(self) -> bool:
        return bool(self.add or self.remove)


def needed(params: list[cmdline.Param], profile: Profile, drop_vfio_ids: bool = False) -> Edit:
    """The arguments to add and remove so `params` satisfies the profile (the audit's own rules)."""
    add, remove = [], []
    off = cmdline.iommu_off(params)
    if off:
        remove.append(off)
    if profile.cpu_vendor == "intel":
        state, arg = cmdline.intel_iommu_state(params)
        if state == "off":
            remove.append("intel_iommu")  # every intel_iommu= word: the last one would win again
        if state != "on":
            add.append("intel_iommu=on")
    else:
        if cmdline.amd_iommu_invalid(params):
            remove.append("amd_iommu")
    add += [w for w in profile.cmdline_require if not cmdline.has(params, w) and w not in add]
    remove += [w for w in profile.cmdline_forbid if cmdline.has(params, w)]
    if cmdline.values(params, "pcie_acs_override"):
        remove.append("pcie_acs_override")
    if drop_vfio_ids and cmdline.values(params, "vfio-pci.ids"):
        remove.append("vfio-pci.ids")
    return Edit(tuple(dict.fromkeys(add)), tuple(dict.fromkeys(remove)))


def _matches(word: str, removal: str) -> bool:
    key, eq, value = word.partition("=")
    rkey, req, rvalue = removal.partition("=")
    if not cmdline.has([(key, value if eq else None)], rkey):
        return False
    return not req or value == rvalue


def edit_words(text: str, add: set[str] | tuple[str, ...], remove: list[str] | tuple[str, ...]) -> str:
    """Drop words matching `remove`, append the `add` words not already there; keep the rest verbatim."""
    words = text.split()
    kept = [w for w in words if not any(_matches(w.strip("\"'"), r) for r in remove)]
    present = cmdline.params(" ".join(kept))
    new = [a for a in dict.fromkeys(add) if not cmdline.has(present, a)]
    return " ".join(kept + new)


def _split_value(raw: str) -> tuple[str, str, str, str]:
    """'"quiet splash"  # c' -> ('"', 'quiet splash', '"', '  # c'); unquoted values end at a space."""
    if raw[:1] in ("'", '"'):
        q = raw[0]
        end = raw.find(q, 1)
        if end < 0:
            raise ValueError("unbalanced quote")
        return q, raw[1:end], q, raw[end + 1:]
    value, sep, rest = raw.partition(" ")
    return "", value, "", sep + rest if sep else ""


def edit_grub(files: list[tuple[str, str]], edit: Edit) -> dict[str, str]:
    """{path: new text} for /etc/default/grub and grub.d/*.cfg files that change."""
    files = [(p, t) for p, t in files if p.startswith("/etc/default/grub")]
    if not files:
        return {}
    lines = [t.split("\n") for _, t in files]
    assignments = [(fi, li) for fi, ls in enumerate(lines) for li, line in enumerate(ls) if _ASSIGN.match(line)]
    for fi, li in assignments:  # pass 1: remove the wrong words wherever they are written
        _rewrite(lines, fi, li, (), edit.remove)
    effective = cmdline.params(cmdline.grub_cmdline([(p, "\n".join(ls)) for (p, _), ls in zip(files, lines)]))
    add = tuple(a for a in edit.add if not cmdline.has(effective, a))
    linux = [(fi, li) for fi, li in assignments if _ASSIGN.match(lines[fi][li]).group(2) == "GRUB_CMDLINE_LINUX"]
    if add and linux:  # pass 2: add once, to the assignment that is read last
        _rewrite(lines, *linux[-1], add, ())
    elif add:
        main = lines[0]
        at = len(main) - 1 if main and main[-1] == "" else len(main)
        main.insert(at, f'GRUB_CMDLINE_LINUX="{" ".join(add)}"')
    out = {}
    for (path, old), ls in zip(files, lines):
        if "\n".join(ls) != old:
            out[path] = "\n".join(ls)
    return out


def _rewrite(lines: list[list[str]], fi: int, li: int, add, remove) -> None:
    prefix, var, raw = _ASSIGN.match(lines[fi][li]).groups()
    q, value, q2, rest = _split_value(raw)
    new_value = edit_words(value, add, remove)
    if new_value != value:
        q = q or '"'
        lines[fi][li] = f"{prefix}{var}={q}{new_value}{q2 or q}{rest}"


def edit_kernel_cmdline(text: str, edit: Edit) -> str:
    """/etc/kernel/cmdline (systemd-boot, kernel-install, proxmox-boot-tool): one line of words."""
    line = text.strip()
    new = edit_words(line, edit.add, edit.remove)
    return new + "\n" if new != line or not text.endswith("\n") else text
