"""grub.cfg's menu and the entry grub boots (GRUB_DEFAULT, grubenv saved_entry / next_entry).

The probe sends the lines of grub.cfg that shape the menu: `menuentry`/`submenu`/`function`
headers, closing braces, `linux` lines and top-level `set default=` lines. grub numbers the
items of each menu level from 0 (submenus count), and `default` names an item by number,
title or --id, a submenu path joined with '>' ('>>' is a literal '>'); a default that names
nothing falls back to item 0, and a submenu chosen without a further part boots its item 0
(grub manual: "default", "GRUB_DEFAULT"; grub-core/normal/menu.c).
"""

import re
import shlex
from dataclasses import dataclass, field


@dataclass
class Item:
    title: str
    id: str
    linux: str = ""  # a menuentry's kernel line
    items: list["Item"] | None = None  # a submenu's items


@dataclass
class Menu:
    items: list[Item] = field(default_factory=list)
    defaults: list[str] = field(default_factory=list)  # values of top-level `set default=`, in order

    def entries(self, prefix: tuple[str, ...] = ()) -> list[tuple[str, Item]]:
        """(name "Submenu > Title", entry) for every menuentry with a kernel line."""
        return _leaves(self.items, prefix)


def _leaves(items: list[Item], prefix: tuple[str, ...]) -> list[tuple[str, Item]]:
    out = []
    for it in items:
        if it.items is not None:
            out += _leaves(it.items, prefix + (it.title,))
        elif it.linux:
            out.append((" > ".join(prefix + (it.title,)), it))
    return out


_HEADER = re.compile(r"^(menuentry|submenu|function)\s")
_LINUX = re.compile(r"^linux(16|efi)?\s")


def _header(line: str) -> tuple[str, str]:
    """(title, id) of `menuentry 'Title' --class x $menuentry_id_option 'id' {`."""
    try:
        words = shlex.split(line.rstrip().removesuffix("{"))
    except ValueError:
        words = line.split()
    title = words[1] if len(words) > 1 else ""
    ident = next((words[i + 1] for i, w in enumerate(words[:-1]) if w in ("--id", "$menuentry_id_option")), "")
    return title, ident


def menu(lines: list[str]) -> Menu:
    """Parse the probe's grub.cfg lines. A kernel line outside any entry (facts from older probes,
    which sent only the first one) becomes an untitled entry."""
    m = Menu()
    stack: list[Item | None] = []  # None: a function body
    for raw in lines:
        line = raw.strip()
        level = m.items if not stack else (stack[-1].items if stack[-1] is not None and stack[-1].items is not None
                                             else None)
        if _HEADER.match(line) and line.endswith("{"):
            kind = line.split()[0]
            if kind == "function":
                stack.append(None)
                continue
            title, ident = _header(line)
            it = Item(title, ident, items=[] if kind == "submenu" else None)
            if level is not None:
                level.append(it)
            stack.append(it)
        elif line == "}":
            if stack:
                stack.pop()
        elif _LINUX.match(line):
            top = stack[-1] if stack else None
            if top is not None and top.items is None:
                top.linux = top.linux or line
            elif not stack:
                m.items.append(Item("", "", linux=line))
        elif line.startswith("set default=") and not stack:
            m.defaults.append(line[len("set default="):].strip().strip("\"'"))
    return m


def _split_path(spec: str) -> list[str]:
    """'a>b' -> ['a', 'b']; '>>' stands for a literal '>'."""
    parts, cur, i = [], "", 0
    while i < len(spec):
        if spec[i] == ">" and spec[i + 1:i + 2] == ">":
            cur, i = cur + ">", i + 2
        elif spec[i] == ">":
            parts, cur, i = parts + [cur], "", i + 1
        else:
            cur, i = cur + spec[i], i + 1
    return parts + [cur]


def select(m: Menu, spec: str) -> tuple[str, Item] | None:
    """The (name, entry) grub boots for `default` = spec ("" or unset: item 0), or None if that
    item has no kernel line (a chainloader, an empty submenu)."""
    items, names, parts = m.items, [], _split_path(spec)
    while items:
        part = parts.pop(0) if parts else ""
        number = re.match(r"\s*(\d+)", part)
        if number:  # grub_strtoul: a leading number is a position, whatever follows
            n = int(number.group(1))
            it = items[n] if n < len(items) else items[0]
        else:
            it = next((i for i in items if part and part in (i.title, i.id)), items[0])
        names.append(it.title)
        if it.items is None:
            return (" > ".join(names), it) if it.linux else None
        items = it.items
    return None


def chosen(m: Menu, env: dict[str, str], env_read: bool) -> tuple[list[tuple[str, Item, str]], str]:
    """([(name, entry, why)] grub boots next, "" ) when the default is known; ([], reason) when not.
    With a grubenv next_entry, the next boot uses it once and the ones after use the default: both."""
    defaults = [d for d in m.defaults if d != "${next_entry}"]
    out = []
    if "${next_entry}" in m.defaults and env.get("next_entry"):
        pick = select(m, env["next_entry"])
        if pick is None:
            return [], f"grubenv next_entry={env['next_entry']} names no Linux entry"
        out.append((*pick, f"grubenv next_entry={env['next_entry']}, the next boot only"))
    if len(set(defaults)) > 1:
        return [], "grub.cfg sets default to " + ", ".join(repr(d) for d in dict.fromkeys(defaults))
    spec = defaults[0] if defaults else ""
    why = f"default={spec}" if spec else "no default: the first entry"
    if "${saved_entry}" in spec:
        if not env_read:
            return [], f"default={spec}, and no grubenv was read to say what saved_entry holds"
        spec = spec.replace("${saved_entry}", env.get("saved_entry", ""))
        why = f"grubenv saved_entry={env.get('saved_entry', '')}" if env.get("saved_entry") else \
            "default=${saved_entry}, no saved_entry in grubenv: the first entry"
    if "$" in spec:
        return [], f"default={spec} depends on a variable the audit cannot read"
    pick = select(m, spec)
    if pick is None:
        return [], f"{why} names no Linux entry"
    return out + [(*pick, why)], ""
