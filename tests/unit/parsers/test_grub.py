import re
from pathlib import Path

import pytest

from iommu_audit.parsers.grub import chosen, menu, select

CFG = (Path(__file__).resolve().parents[2] / "data" / "grub" / "ubuntu-22.04-grub.cfg").read_text()
# The lines the probe sends (boot_generated): menu headers, closing braces, kernel lines, set default=.
SENT = re.compile(r"^\s*((menuentry|submenu|function)\s|linux(16|efi)?\s|set default=|\}\s*$)")
R = "b2d4f6a8-1c3e-4a5b-9d7f-0e2c4a6b8d10"
ADVANCED = "Advanced options for Ubuntu"


def sent(text: str = CFG) -> list[str]:
    return [ln.replace("\t", " ") for ln in text.splitlines() if SENT.match(ln)]


def test_menu_of_a_real_ubuntu_grub_cfg():
    m = menu(sent())
    assert [i.title for i in m.items] == ["Ubuntu", ADVANCED, "UEFI Firmware Settings"]
    assert m.items[1].id == f"gnulinux-advanced-{R}" and len(m.items[1].items) == 4
    assert m.defaults == ["${next_entry}", "${saved_entry}"]
    names = [n for n, _ in m.entries()]
    assert names[0] == "Ubuntu" and names[2] == f"{ADVANCED} > Ubuntu, with Linux 5.15.0-91-generic (recovery mode)"
    assert "UEFI Firmware Settings" not in names  # no kernel: fwsetup


@pytest.mark.parametrize("spec, want", [
    ("", "Ubuntu"),
    ("0", "Ubuntu"),
    ("1", f"{ADVANCED} > Ubuntu, with Linux 5.15.0-91-generic"),  # a submenu alone: its first entry
    ("1>2", f"{ADVANCED} > Ubuntu, with Linux 5.15.0-89-generic"),
    (f"{ADVANCED}>Ubuntu, with Linux 5.15.0-91-generic (recovery mode)",
     f"{ADVANCED} > Ubuntu, with Linux 5.15.0-91-generic (recovery mode)"),
    (f"gnulinux-advanced-{R}>gnulinux-5.15.0-89-generic-recovery-{R}",
     f"{ADVANCED} > Ubuntu, with Linux 5.15.0-89-generic (recovery mode)"),
    ("no such entry", "Ubuntu"),  # grub falls back to the first item
    ("7", "Ubuntu"),
])
def test_select_follows_grubs_rules(spec, want):
    assert select(menu(sent()), spec)[0] == want


def test_select_an_entry_without_a_kernel_is_none():
    assert select(menu(sent()), "uefi-firmware") is None


def test_saved_entry_and_next_entry_from_grubenv():
    m = menu(sent())
    rec = f"gnulinux-advanced-{R}>gnulinux-5.15.0-91-generic-recovery-{R}"
    picks, why = chosen(m, {"saved_entry": rec}, True)
    assert why == "" and [(n, w) for n, _, w in picks] == [
        (f"{ADVANCED} > Ubuntu, with Linux 5.15.0-91-generic (recovery mode)", f"grubenv saved_entry={rec}")]
    assert "recovery nomodeset" in picks[0][1].linux
    picks, _ = chosen(m, {}, True)
    assert [n for n, _, _ in picks] == ["Ubuntu"]  # saved_entry unset: the first entry
    picks, _ = chosen(m, {"next_entry": "1>2", "saved_entry": "0"}, True)
    assert [(n, w) for n, _, w in picks] == [
        (f"{ADVANCED} > Ubuntu, with Linux 5.15.0-89-generic", "grubenv next_entry=1>2, the next boot only"),
        ("Ubuntu", "grubenv saved_entry=0")]


def test_unknown_default_says_why():
    m = menu(sent())
    assert chosen(m, {}, False) == ([], "default=${saved_entry}, and no grubenv was read to say what saved_entry holds")
    m = menu(sent(CFG.replace('set default="${saved_entry}"', 'set default="${my_var}"')))
    assert "depends on a variable" in chosen(m, {}, True)[1]
    m = menu(sent(CFG.replace('set default="${saved_entry}"', 'set default="0"') + '\nset default="1>3"\n'))
    assert chosen(m, {}, True)[1] == "grub.cfg sets default to '0', '1>3'"


def test_a_plain_number_default_and_old_facts():
    m = menu(sent(CFG.replace('set default="${saved_entry}"', 'set default="1>1"')))
    assert [n for n, _, _ in chosen(m, {}, False)[0]] == [f"{ADVANCED} > Ubuntu, with Linux 5.15.0-91-generic (recovery mode)"]
    # Facts saved by older probes hold only the first kernel line.
    old = menu(["linux /vmlinuz-5.15.0-91-generic root=/dev/mapper/vg0-root ro intel_iommu=on"])
    assert [(n, e.linux.split()[-1]) for n, e, _ in chosen(old, {}, False)[0]] == [("", "intel_iommu=on")]


def test_double_gt_is_a_literal_gt_in_a_title():
    m = menu(["menuentry 'a>b' {", "linux /vmlinuz x=1", "}", "menuentry 'c' {", "linux /vmlinuz x=2", "}"])
    assert select(m, "a>>b")[1].linux.endswith("x=1")
