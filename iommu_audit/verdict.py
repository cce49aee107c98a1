"""The outcome of one rule: what was found, what was expected, how to fix it."""

from dataclasses import dataclass


@dataclass(frozen=True)
class Verdict:
    ok: bool
    found: str
    expected: str = ""
    fix: str = ""
    evidence: tuple[str, ...] = ()
    # Set when the rule cannot apply (e.g. the device is missing: device-present reports that).
    skip: str = ""


def passed(found: str, evidence=(), expected: str = "") -> Verdict:
    return Verdict(True, found, expected, evidence=tuple(evidence))


def failed(found: str, expected: str, fix: str, evidence=()) -> Verdict:
    return Verdict(False, found, expected, fix, tuple(evidence))


def not_applicable(reason: str) -> Verdict:
    return Verdict(True, reason, skip=reason)
