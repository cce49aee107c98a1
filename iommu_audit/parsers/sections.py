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

    def arg(self, key: str, default: str = "") -> str:
        """Value of a key=value argument on the section line."""
        for a in self.args:
            if a.startswith(key + "="):
                return a[len(key) + 1:]
        return default


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
