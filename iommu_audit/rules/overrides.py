"""Settings that switch VFIO's isolation off, and IOMMU arguments meant for the other CPU vendor."""

from iommu_audit.facts import HostFacts
from iommu_audit.parsers import cmdline
from iommu_audit.parsers.modules import module_name
from iommu_audit.profile import Profile
from iommu_audit.verdict import Verdict, failed, passed

# (module, parameter, why it voids isolation). Both are bool module parameters (drivers/vfio/).
UNSAFE_PARAMS = [
    ("vfio_iommu_type1", "allow_unsafe_interrupts",
     "VFIO then assigns devices without interrupt remapping: a VM can send arbitrary MSIs (interrupts) into the host"),
    ("vfio", "enable_unsafe_noiommu_mode",
     "VFIO then works without any IOMMU: the device can DMA to all host memory and the kernel is tainted"),
]
RELAX_RMRR_WHY = ("intel_iommu=relax_rmrr (an out-of-tree patch) ignores RMRRs: the device keeps DMA-ing into memory "
                  "the firmware (iLO, Smart Array) owns, now also mapped for the VM")


def _true(value: str | None) -> bool:
    """A bool module parameter as the kernel reads it (param_set_bool/kstrtobool); no value means true."""
    if value is None:
        return True
    v = value.strip().lower()
    return v[:1] in ("y", "t", "1") or v.startswith("on")


def _param_settings(facts: HostFacts, module: str, param: str) -> list[str]:
    """Where the parameter is switched on: running kernel, next boot, modprobe.d, live value."""
    key = f"{module}.{param}"
    found = []
    now = cmdline.values(facts.params, key)
    if now and _true(now[-1]):  # the last occurrence wins
        found.append(f"/proc/cmdline: {key}={now[-1] or ''}".rstrip("="))
    for where, line in facts.boot_sources():
        later = cmdline.values(cmdline.params(line), key)
        if later and _true(later[-1]):
            found.append(f"{where} (next boot): {key}={later[-1] or ''}".rstrip("="))
    options = [(w, ml) for ml in facts.modprobe if len(ml.words) > 2 and ml.words[0] == "options"
               and module_name(ml.words[1]) == module for w in ml.words[2:] if w.partition("=")[0] == param]
    if options:
        word, line = options[-1]
        _, eq, value = word.partition("=")
        if _true(value if eq else None):
            built_in = " (ignored while the module is built in, applies if it becomes a module)" \
                if module in facts.modules.builtin else ""
            found.append(f"{line}{built_in}")
    live = facts.platform.params.get(f"{module}/parameters/{param}")
    if live is not None and _true(live):
        found.append(f"/sys/module/{module}/parameters/{param} = {live} (active now)")
    return found


def no_unsafe_overrides(facts: HostFacts, profile: Profile) -> Verdict:
    problems, evidence, fixes = [], [], []
    for module, param, why in UNSAFE_PARAMS:
        hits = _param_settings(facts, module, param)
        if hits:
            problems.append(f"{module}.{param} is on: {why}")
            evidence += hits
            fixes.append(f"remove {module}.{param} from the kernel command line and boot configuration and "
                         f"'options {module} {param}=...' from modprobe.d, then reboot")
    relax = [f"{where}: intel_iommu={v}" for where, line in [("/proc/cmdline", facts.cmdline)] + facts.boot_sources()
             for v in cmdline.values(cmdline.params(line), "intel_iommu") if "relax_rmrr" in (v or "").split(",")]
    if relax:
        problems.append(RELAX_RMRR_WHY)
        evidence += relax
        fixes.append("remove relax_rmrr and boot a stock kernel; resolve the RMRR in firmware instead (see no-rmrr-lockout)")
    checked = ", ".join(f"{m}.{p}" for m, p, _ in UNSAFE_PARAMS) + ", intel_iommu=relax_rmrr"
    if problems:
        return failed("; ".join(problems), f"none of: {checked}", "; ".join(fixes), evidence)
    live = [f"{k} = {v}" for k, v in facts.platform.params.items()]
    return passed(f"none of {checked} (command line, boot configuration, modprobe.d"
                  + (", live module parameters)" if live else "; live parameters not readable)"), live)


def cmdline_no_foreign_iommu_args(facts: HostFacts, profile: Profile) -> Verdict:
    """amd_iommu= options the kernel rejects on an Intel host (cmdline-iommu judges them on AMD)."""
    if profile.cpu_vendor == "amd":
        return passed("AMD host: cmdline-iommu judges amd_iommu= options (required there)")
    bad = cmdline.amd_iommu_invalid(facts.params)
    if not bad:
        return passed("no invalid amd_iommu= option on the command line")
    words = " ".join(f"amd_iommu={o}" for o in bad)
    evidence = [f"/proc/cmdline: {facts.cmdline}"] + [f.line for f in facts.findings("amd_unknown_option")]
    return failed(f"{words}: not a valid amd_iommu option (6.1+ kernels log 'AMD-Vi: Unknown option', older ones "
                  "ignore it); it has no effect on this Intel host and misleads whoever reads the command line",
                  "no amd_iommu= option the kernel rejects", f"remove {words} from the boot configuration", evidence)
