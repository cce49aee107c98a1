"""Split the probe's output into sections.

>>> [s.name for s in split("::iommu-audit:: cmdline\\nro quiet\\n::iommu-audit:: end\\n")]
['cmdline', 'end']
"""

from dataclasses import dataclass

MARKER = "::iommu-audit::"  # the probe's default; gather passes a random one per run


@dataclass(frozen=True)
class Section:
    name: str
    args: tuple[str, ...]
    body: str
    marker: str = MARKER

    def rows(self) -> list[list[str]]:
        """Tab-separated rows, blank lines dropped."""
        return [line.split("\t") for line in self.body.splitlines() if line.strip()]

    def files(self) -> list[tuple[str, str]]:
        """(path, text) pairs of a section made by the probe's files() helper."""
        out: list[tuple[str, list[str]]] = []
        header = f"{self.marker}:file "
        for line in self.body.splitlines():
            if line.startswith(header):
                out.append((line[len(header):], []))
            elif out:
                out[-1][1].append(line)
        return [(path, "\n".join(lines)) for path, lines in out]

    def raw(self) -> "Raw":
        """A section of batched reads (probe.sh `links` and `attrs`): its rows, symlinks and first lines.

        Facts saved before the probe batched its reads (--facts, --baseline) hold whole rows
        instead: the *_rows joins pass a row that already has its fields through as it is."""
        rows, links, values = [], {}, {}
        for line in self.body.splitlines():
            if line.startswith("l\t./"):  # l TAB ./PATH TAB TARGET
                path, _, target = line[4:].partition("\t")
                links[path] = target
            elif line.startswith("./"):  # grep -H: ./DIR/ATTR:LINE, DIR may hold colons (PCI addresses), ATTR not
                head, slash, rest = line[2:].partition("/")
                if slash:
                    attr, _, value = rest.partition(":")
                    path = f"{head}/{attr}"
                else:  # a file of the directory itself (driverctl's pci-0000:06:00.0): its value holds no colon
                    path, _, value = head.rpartition(":")
                values[path] = value.strip(" \t")  # as sh's `read` gave it
            elif line.strip():
                rows.append(line.split("\t"))
        return Raw(rows, links, values)

    def arg(self, key: str, default: str = "") -> str:
        """Value of a key=value argument on the section line."""
        for a in self.args:
            if a.startswith(key + "="):
                return a[len(key) + 1:]
        return default


@dataclass(frozen=True)
class Raw:
    rows: list[list[str]]  # tab-separated rows
    links: dict[str, str]  # "0000:06:00.0/driver" -> "../../../bus/pci/drivers/vfio-pci"
    values: dict[str, str]  # "0000:06:00.0/vendor" -> "0x144d": a file's first line ("" if unread)

    def value(self, path: str) -> str:
        return self.values.get(path, "")

    def link(self, path: str) -> str:
        """The last component of the link's target ("vfio-pci"), or ""."""
        return self.links.get(path, "").rsplit("/", 1)[-1]


def split(text: str, marker: str = MARKER) -> list[Section]:
    sections: list[Section] = []
    header, body = None, []
    opener = marker + " "
    for line in text.splitlines():
        if line.startswith(opener):
            if header is not None:
                sections.append(_section(header, body, marker))
            header, body = line[len(opener):], []
        elif header is not None:
            body.append(line)
    if header is not None:
        sections.append(_section(header, body, marker))
    return sections


def _section(header: str, body: list[str], marker: str) -> Section:
    name, _, rest = header.partition(" ")
    # "domain STATE NAME": the domain name may hold spaces, so keep it whole.
    args = tuple(rest.split(" ", 1)) if name == "domain" else tuple(rest.split())
    return Section(name, args, "\n".join(body).strip("\n"), marker)
