"""Check that a report was not altered, and take its facts out for a re-audit.

  iommu-audit verify REPORT.html|REPORT.json     (or: python -m iommu_audit.report verify ...)
  iommu-audit facts REPORT.html|REPORT.json FILE  writes the judged facts for `pytest --facts=FILE`

Two checks: the content hash (profile + facts + results, see model.py) recomputed from the
embedded data, and for HTML the file seal, a SHA-256 of every byte of the file (with the seal
itself as zeros), so no visible text can change either. Both are plain SHA-256, not signatures:
keep the content hash with the sign-off (ticket, change record) to compare a copy against it.
"""

import argparse
import hashlib
import json
import re
import sys
from pathlib import Path

from iommu_audit import gather
from iommu_audit.report import model

DATA_OPEN = '<script type="application/json" id="iommu-audit-data">'
SEAL_OPEN = b'<code id="ia-seal">'
UNSEALED = b"0" * 64
_SEAL = re.compile(re.escape(SEAL_OPEN) + rb"([0-9a-f]{64})<")


class ReportError(Exception):
    """Not a readable iommu-audit report; the message says why."""


def embed(doc: dict) -> str:
    """The document as a script element; '</' is escaped so no string in it can close the element."""
    return DATA_OPEN + json.dumps(doc, ensure_ascii=False).replace("</", "<\\/") + "</script>"


def seal_placeholder() -> str:
    return (SEAL_OPEN + UNSEALED).decode() + "</code>"


def seal(path: Path) -> str | None:
    data = path.read_bytes()
    if data.count(SEAL_OPEN + UNSEALED) != 1:
        return None
    digest = hashlib.sha256(data).hexdigest()
    path.write_bytes(data.replace(SEAL_OPEN + UNSEALED, SEAL_OPEN + digest.encode()))
    return digest


def load(path: Path) -> tuple[dict, bytes]:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ReportError(f"{path}: cannot read it ({exc.strerror})") from None
    text = data.decode("utf-8", errors="replace")
    if path.suffix == ".json" or text.lstrip().startswith("{"):
        raw = text
    else:
        start = text.find(DATA_OPEN)
        end = text.find("</script>", start)
        if start < 0 or end < 0:
            raise ReportError(f"{path}: no embedded iommu-audit data (is it a report written with --report?)")
        raw = text[start + len(DATA_OPEN):end]
    try:
        doc = json.loads(raw)
    except ValueError as exc:
        raise ReportError(f"{path}: the embedded data is not valid JSON ({exc})") from None
    if not isinstance(doc, dict) or doc.get("format") != model.REPORT_FORMAT or not isinstance(doc.get("judged"), dict):
        raise ReportError(f"{path}: not an iommu-audit report (expected \"format\": \"{model.REPORT_FORMAT}\")")
    return doc, data


def verify(path: Path) -> list[str]:
    """Problems found (empty: unaltered). Raises ReportError for a file that is no report."""
    doc, data = load(path)
    problems = []
    recomputed = model.content_hash(doc["judged"])
    if recomputed != doc.get("sha256"):
        problems.append(f"content hash mismatch: the report states {doc.get('sha256')}, "
                        f"its profile, facts and results hash to {recomputed}")
    profile_sha = hashlib.sha256(str(doc["judged"].get("profile", "")).encode("utf-8")).hexdigest()
    if profile_sha != doc.get("run", {}).get("profile_sha256"):
        problems.append("the embedded profile does not match the profile SHA-256 in the header")
    if path.suffix != ".json" and not data.lstrip().startswith(b"{"):
        seals = _SEAL.findall(data)
        if len(seals) != 1:
            problems.append("file seal missing (the report was not finished, or was edited)")
        else:
            unsealed = data.replace(SEAL_OPEN + seals[0], SEAL_OPEN + UNSEALED)
            if hashlib.sha256(unsealed).hexdigest() != seals[0].decode():
                problems.append("file seal mismatch: bytes of the file changed after it was written")
    return problems


def extract_facts(path: Path, out: Path) -> int:
    doc, _ = load(path)
    hosts = [gather.Gathered(f["name"], f"report:{path}", "", f["probe_output"], f["marker"])
             for f in doc["judged"]["facts"]]
    gather.save(str(out), hosts)
    return len(hosts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="iommu-audit", description="iommu-audit report tools")
    sub = parser.add_subparsers(dest="command", required=True)
    v = sub.add_parser("verify", help="check that a report (HTML or JSON) was not altered")
    v.add_argument("report", type=Path)
    f = sub.add_parser("facts", help="write a report's judged facts to FILE, for pytest --facts=FILE")
    f.add_argument("report", type=Path)
    f.add_argument("file", type=Path)
    args = parser.parse_args(argv)
    try:
        if args.command == "facts":
            n = extract_facts(args.report, args.file)
            print(f"{args.file}: facts of {n} host(s); re-audit with: pytest --profile=<the profile> --facts={args.file}")
            return 0
        problems = verify(args.report)
    except ReportError as exc:
        print(f"iommu-audit: {exc}", file=sys.stderr)
        return 2
    doc, _ = load(args.report)
    if problems:
        print(f"ALTERED: {args.report}")
        for p in problems:
            print(f"  {p}")
        return 1
    verdicts = ", ".join(f"{h['name']} {h['verdict']}" for h in doc["hosts"])
    print(f"OK: {args.report} is unaltered\n  content SHA-256 (profile + facts + results): {doc['sha256']}\n"
          f"  profile {doc['run']['profile']} (SHA-256 {doc['run']['profile_sha256']}); {verdicts}")
    return 0
