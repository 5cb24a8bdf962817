"""The finding: a stable code, what was seen (with numbers), which requests show it, and what to change."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from analyzer.report.derive import Request

INFO = "info"
WARNING = "warning"
ERROR = "error"
SEVERITY_ORDER = {ERROR: 0, WARNING: 1, INFO: 2}


def iso(seconds: float) -> str:
    """POSIX seconds as ISO-8601 UTC with milliseconds (``2026-11-28T21:53:29.366Z``)."""
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


@dataclass
class Finding:
    """One finding. ``ids`` are the records that show it (never empty); ``first``/``last`` when they started."""

    code: str
    severity: str
    group: str  # "performance" | "errors" | "capture"
    title: str
    detail: str
    suggestion: str
    ids: list[str]
    first: str
    last: str
    numbers: dict[str, Any] = field(default_factory=dict)
    try_commands: list[str] = field(default_factory=list)  # report/try_it.py: replay + compare to test the change

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready, keys in a fixed order."""
        return {
            "code": self.code,
            "severity": self.severity,
            "group": self.group,
            "title": self.title,
            "detail": self.detail,
            "suggestion": self.suggestion,
            "count": len(self.ids),
            "ids": self.ids,
            "first": self.first,
            "last": self.last,
            "numbers": self.numbers,
            "try": self.try_commands,
        }


def make_finding(
    code: str,
    severity: str,
    group: str,
    title: str,
    detail: str,
    suggestion: str,
    evidence: Sequence[Request],
    numbers: dict[str, Any] | None = None,
) -> Finding:
    """A finding over ``evidence`` (at least one request: no finding without evidence records)."""
    if not evidence:
        raise ValueError(f"finding {code} without evidence")
    ordered = sorted(evidence, key=lambda r: r.start)
    return Finding(
        code=code,
        severity=severity,
        group=group,
        title=title,
        detail=detail,
        suggestion=suggestion,
        ids=[r.id for r in ordered],
        first=iso(ordered[0].start),
        last=iso(ordered[-1].start),
        numbers=numbers or {},
    )
