"""The iommu-audit command: tools around the audit (the audit itself runs as `pytest --profile NAME`).

  iommu-audit discover ...     a starter profile from a host (iommu_audit/discover.py)
  iommu-audit verify REPORT    was a report altered? (iommu_audit/report/verify.py)
  iommu-audit facts REPORT F   a report's judged facts, for a re-audit with --facts=F
"""

import sys

from iommu_audit import discover
from iommu_audit.report import verify

COMMANDS = {"discover": discover.main, "verify": verify.main, "facts": verify.main}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    command = COMMANDS.get(argv[0] if argv else "")
    if command is None:
        sys.stderr.write("usage: iommu-audit {discover,verify,facts} ... (see README)\n"
                         "(the audit itself runs as: pytest --profile NAME ...)\n")
        return 4
    return command(argv)


if __name__ == "__main__":
    sys.exit(main())
