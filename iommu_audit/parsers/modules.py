"""Kernel modules, modprobe.d options, driverctl overrides and what applies them at boot."""

import shlex
from dataclasses import dataclass

from iommu_audit.parsers.sections import Raw
from iommu_audit.pci import AddressError, normalize_address


def module_name(text: str) -> str:
    """'kernel/drivers/vfio/pci/vfio-pci.ko.zst' -> 'vfio_pci'."""
    base = text.rsplit("/", 1)[-1]
    for ext in (".zst", ".xz", ".gz"):
        base = base.removesuffix(ext)
    return base.removesuffix(".ko").replace("-", "_")


@dataclass(frozen=True)
class Modules:
    loaded: frozenset[str]  # /proc/modules
    in_sysfs: frozenset[str]  # /sys/module (loaded modules and built-ins with parameters)
    builtin: frozenset[str]  # modules.builtin
    on_disk: frozenset[str]  # modules.dep

    def active(self, name: str) -> bool:
        return name in self.loaded or name in self.builtin or name in self.in_sysfs


def modules(rows: list[list[str]]) -> Modules:
    sets: dict[str, set[str]] = {"loaded": set(), "sysfs": set(), "builtin": set(), "file": set()}
    for r in rows:
        if len(r) > 1 and r[0] in sets:
            sets[r[0]].add(module_name(r[1]))
    return Modules(*(frozenset(sets[k]) for k in ("loaded", "sysfs", "builtin", "file")))


@dataclass(frozen=True)
class ModprobeLine:
    path: str
    words: tuple[str, ...]

    def __str__(self) -> str:
        return f"{self.path}: {' '.join(self.words)}"


def modprobe_lines(files: list[tuple[str, str]]) -> list[ModprobeLine]:
    out = []
    for path, text in files:
        # modprobe.d allows "\" line continuation; join before splitting.
        for line in text.replace("\\\n", " ").splitlines():
            line = line.split("#", 1)[0].strip()
            if line:
                try:
                    out.append(ModprobeLine(path, tuple(shlex.split(line))))
                except ValueError:
                    out.append(ModprobeLine(path, tuple(line.split())))
    return out


def modprobe_vfio_ids(lines: list[ModprobeLine]) -> list[tuple[str, ModprobeLine]]:
    """(vendor:device, the line) for every 'options vfio-pci ids=...' entry."""
    out = []
    for ml in lines:
        w = ml.words
        if len(w) >= 3 and w[0] == "options" and module_name(w[1]) == "vfio_pci":
            for opt in w[2:]:
                key, _, value = opt.partition("=")
                if key == "ids":
                    out += [(":".join(i.lower().split(":")[:2]), ml) for i in value.split(",") if i]
    return out


def driverctl_rows(raw: Raw) -> list[list[str]]:
    """Rows of the probe's driverctl section: file driver."""
    return [r if len(r) > 1 else [r[0], raw.value(r[0])] for r in raw.rows]


def driverctl_overrides(rows: list[list[str]]) -> dict[str, str]:
    """{PCI address: driver} from /etc/driverctl.d/pci-<address> files."""
    out = {}
    for r in rows:
        if len(r) > 1 and r[0].startswith("pci-"):
            try:
                out[normalize_address(r[0][4:])] = r[1].strip()
            except AddressError:
                continue
    return out


DRIVERCTL_RULE = "05-driverctl.rules"  # driverctl's udev rule: starts driverctl@.service per override
DRIVERCTL_UNIT = "driverctl@.service"  # runs `driverctl load-override` for the device
OWN_RULE = "89-iommu-audit-vfio.rules"  # fixes/vfio-binding-persistent.sh's rule on hosts without driverctl
RULE_DIRS = "/etc, /run, /usr/local/lib, /usr/lib, /lib"  # udev/systemd search order, first wins


@dataclass(frozen=True)
class Binder:
    """A udev rule or unit file that may apply /etc/driverctl.d at boot (probe section `binders`)."""
    path: str
    target: str  # its symlink target, or ""
    lines: int  # uncommented lines naming driverctl: 0 for an empty, commented-out or /dev/null file

    def why_not(self) -> str:
        """Why this file (the one udev/systemd use for its name) does nothing, or ""."""
        if self.target.endswith("/dev/null"):  # in a --sysroot copy: "../../../dev/null"
            return f"{self.path} masks it (a link to /dev/null)"
        return "" if self.lines else f"{self.path} masks it (no uncommented line naming driverctl)"


def binders(rows: list[list[str]]) -> list[Binder]:
    """Rows "PATH LINK LINES", in the probe's order: for each name, the first directory wins."""
    out = []
    for r in rows:
        if len(r) == 3 and r[2].isdigit():
            out.append(Binder(r[0], r[1], int(r[2])))
    return out


def driverctl_appliers(files: list[Binder]) -> tuple[list[str], list[str]]:
    """(what applies /etc/driverctl.d at the next boot, why each candidate does not)."""
    def state(name: str) -> tuple[Binder | None, str]:
        first = next((b for b in files if b.path.rsplit("/", 1)[-1] == name), None)
        if first is None:
            return None, f"{name} is in none of {RULE_DIRS}"
        return first, first.why_not()

    rule, rule_bad = state(DRIVERCTL_RULE)
    unit, unit_bad = state(DRIVERCTL_UNIT)
    own, own_bad = state(OWN_RULE)
    ok, bad = [], []
    if rule_bad or unit_bad:
        bad.append("driverctl: " + "; ".join(x for x in (rule_bad, unit_bad) if x))
    else:
        ok.append(f"driverctl's {rule.path} and {unit.path}")
    if own_bad:
        bad.append(own_bad)
    else:
        ok.append(own.path)
    return ok, bad
