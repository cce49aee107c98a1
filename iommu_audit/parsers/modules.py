"""Kernel modules, modprobe.d options and driverctl overrides."""

import shlex
from dataclasses import dataclass

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
