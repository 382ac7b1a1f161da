"""Check results and the doctor's report."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

PASS, WARN, FAIL = "PASS", "WARN", "FAIL"


@dataclass
class Check:
    """One check's verdict.

    Attributes:
        name: short name, e.g. ``"registration"``.
        status: ``PASS``, ``WARN`` or ``FAIL``.
        summary: one line saying what was found.
        evidence: the facts behind the verdict (names of layers, labels, files, numbers).
        suggestion: what to do about it (empty when nothing needs doing).
        data: numbers for the JSON report and plots.
    """

    name: str
    status: str
    summary: str
    evidence: list[str] = field(default_factory=list)
    suggestion: str = ""
    data: dict[str, Any] = field(default_factory=dict)

    @property
    def failed(self) -> bool:
        return self.status == FAIL


def worst(statuses: list[str]) -> str:
    return FAIL if FAIL in statuses else WARN if WARN in statuses else PASS


def format_report(checks: list[Check], max_evidence: int = 12) -> str:
    lines = []
    for check in checks:
        lines.append(f"[{check.status}] {check.name}: {check.summary}")
        for item in check.evidence[:max_evidence]:
            lines.append(f"       - {item}")
        if len(check.evidence) > max_evidence:
            lines.append(f"       - ... and {len(check.evidence) - max_evidence} more")
        if check.suggestion:
            lines.append(f"       suggestion: {check.suggestion}")
    counts = {s: sum(c.status == s for c in checks) for s in (PASS, WARN, FAIL)}
    lines.append(f"{counts[PASS]} passed, {counts[WARN]} warned, {counts[FAIL]} failed")
    return "\n".join(lines)


def report_json(checks: list[Check]) -> str:
    return json.dumps({"status": worst([c.status for c in checks]), "checks": [asdict(c) for c in checks]}, indent=2, default=float)
