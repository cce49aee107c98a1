"""Kernel command line, parsed the way the kernel parses it.

>>> params('BOOT_IMAGE=/vmlinuz ro "quiet splash" intel_iommu=on,igfx_off -- single')
[('BOOT_IMAGE', '/vmlinuz'), ('ro', None), ('quiet splash', None), ('intel_iommu', 'on,igfx_off')]
>>> intel_iommu_state(params("intel_iommu=on intel_iommu=off"))
('off', 'intel_iommu=off')
"""

import re
import shlex

Param = tuple[str, str | None]


def params(cmdline: str) -> list[Param]:
    """key/value pairs in order; words after a lone "--" belong to init and are dropped."""
    out: list[Param] = []
    for word in _words(cmdline):
        if word == "--":
            break
        key, eq, value = word.partition("=")
        out.append((key, value if eq else None))
    return out


def _words(cmdline: str) -> list[str]:
    # The kernel splits on spaces and strips double quotes (next_arg in lib/cmdline.c).
    words, cur, quoted = [], [], False
    for ch in cmdline.strip():
        if ch == '"':
            quoted = not quoted
        elif ch.isspace() and not quoted:
            if cur:
                words.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    if cur:
        words.append("".join(cur))
    return words


def _same_key(a: str, b: str) -> bool:
    # Module parameters (name.param) treat '-' and '_' alike; __setup() names do not.
    if "." in a and "." in b:
        return a.replace("-", "_") == b.replace("-", "_")
    return a == b


def values(ps: list[Param], key: str) -> list[str | None]:
    return [v for k, v in ps if _same_key(k, key)]


# Arguments whose handler reads a comma list of options on top of earlier occurrences
# (iommu_setup in arch/x86/kernel/pci-dma.c, intel_iommu_setup, setup_irqremap): an option
# holds until a later occurrence gives its opposite. Every other key=value: the last one wins.
OPPOSITES = {
    "iommu": [("pt", "nopt"), ("merge", "nomerge"), ("panic", "nopanic"), ("force", "noforce")],
    "intel_iommu": [("on", "off"), ("sm_on", "sm_off")],
    "intremap": [("on", "off")],
    "amd_iommu": [],
}


def _option_set(ps: list[Param], key: str, option: str) -> bool:
    opposite = {o for pair in OPPOSITES[key] if option in pair for o in pair} - {option}
    state = False
    for value in values(ps, key):
        for opt in (value or "").split(","):
            if opt == option:
                state = True
            elif opt in opposite:
                state = False
    return state


def effective(ps: list[Param], key: str) -> str | None:
    """The value the kernel keeps for a plain key=value argument: the last occurrence."""
    found = values(ps, key)
    return found[-1] if found else None


def has(ps: list[Param], word: str) -> bool:
    """True if the kernel ends up with "key" or "key=value"; value may be one of a comma list.

    >>> has(params("intel_iommu=on,igfx_off"), "intel_iommu=on")
    True
    >>> has(params("iommu=pt iommu=nopt"), "iommu=pt")
    False
    """
    key, eq, value = word.partition("=")
    if not eq:
        return any(_same_key(k, key) for k, _ in ps)
    if key in OPPOSITES:
        return all(_option_set(ps, key, opt) for opt in value.split(","))
    last = effective(ps, key)
    return last is not None and (last == value or value in last.split(","))


def _options_state(ps: list[Param], key: str, on: set[str], off: set[str]) -> tuple[str | None, str]:
    # Every occurrence is handled in order and each comma option in turn, so the last on/off wins.
    state, evidence = None, ""
    for value in values(ps, key):
        for opt in (value or "").split(","):
            if opt in on or opt in off:
                state, evidence = ("on" if opt in on else "off"), f"{key}={value}"
    return state, evidence


def intel_iommu_state(ps: list[Param]) -> tuple[str | None, str]:
    """('on'|'off'|None, the deciding argument) for intel_iommu=."""
    return _options_state(ps, "intel_iommu", {"on"}, {"off"})


# Options accepted by parse_amd_iommu_options() (drivers/iommu/amd/init.c, 5.x-6.x).
AMD_IOMMU_OPTIONS = {
    "fullflush", "force_enable", "off", "force_isolation", "pgtbl_v1", "pgtbl_v2",
    "irtcachedis", "nohugepages", "v2_pgsizes_only",
}


def amd_iommu_invalid(ps: list[Param]) -> list[str]:
    """amd_iommu= options the kernel does not know (amd_iommu=on is the classic one)."""
    bad = []
    for value in values(ps, "amd_iommu"):
        bad += [o for o in (value or "").split(",") if o and o not in AMD_IOMMU_OPTIONS]
    return bad


def iommu_off(ps: list[Param]) -> str:
    """The argument that switches every IOMMU off (iommu=off / amd_iommu=off), or ''."""
    for key in ("iommu", "amd_iommu"):
        for value in values(ps, key):
            if "off" in (value or "").split(","):
                return f"{key}={value}"
    return ""


def vfio_pci_ids(ps: list[Param]) -> list[str]:
    """vendor:device IDs claimed by vfio-pci.ids= (the last occurrence wins; subsystem parts dropped)."""
    value = effective(ps, "vfio-pci.ids")
    return [_vendor_device(i) for i in (value or "").split(",") if i]


def _vendor_device(entry: str) -> str:
    # vfio-pci.ids entries are vendor:device[:subvendor:subdevice[:class:class_mask]].
    return ":".join(entry.lower().split(":")[:2])


_GRUB_ASSIGN = re.compile(r"^\s*(?:export\s+)?(GRUB_CMDLINE_LINUX(?:_DEFAULT)?)=(.*)$")
_GRUB_REF = re.compile(r"\$\{?(GRUB_CMDLINE_LINUX(?:_DEFAULT)?)\}?")


def grub_cmdline(files: list[tuple[str, str]]) -> str:
    """The command line update-grub would write, from /etc/default/grub then grub.d/*.cfg."""
    env = {"GRUB_CMDLINE_LINUX": "", "GRUB_CMDLINE_LINUX_DEFAULT": ""}
    for _, text in files:
        for line in text.splitlines():
            m = _GRUB_ASSIGN.match(line)
            if not m:
                continue
            raw = _GRUB_REF.sub(lambda r: env[r.group(1)], m.group(2))
            try:
                env[m.group(1)] = " ".join(shlex.split(raw, comments=True))
            except ValueError:  # unbalanced quotes: grub-mkconfig would fail too
                env[m.group(1)] = raw
    return " ".join(v for v in (env["GRUB_CMDLINE_LINUX"], env["GRUB_CMDLINE_LINUX_DEFAULT"]) if v)

