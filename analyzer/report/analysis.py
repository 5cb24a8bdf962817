"""Records in, analysis out: the requests view, the headline numbers and the findings, computed once."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from analyzer.protocol.record import InteractionRecord
from analyzer.report.derive import Request, to_request
from analyzer.report.finding import Finding
from analyzer.report.findings import find
from analyzer.report.headline import headline
from analyzer.resources.cost import Prices

JSON_VERSION = 1


@dataclass
class Analysis:
    """What ``report``, ``report --json`` and ``findings`` show."""

    requests: list[Request]
    headline: dict[str, Any]
    findings: list[Finding]
    skipped: int = 0  # records without a readable started_at

    def to_dict(self) -> dict[str, Any]:
        """The ``report --json`` document."""
        return {
            "version": JSON_VERSION,
            "headline": self.headline,
            "findings": [f.to_dict() for f in self.findings],
        }


def analyze(records: Iterable[InteractionRecord], prices: Prices | None = None) -> Analysis:
    """Reduce the records to requests (oldest first), then compute the headline (with costs at ``prices``) and
    the findings."""
    requests: list[Request] = []
    skipped = 0
    for record in records:
        request = to_request(record)
        if request is None:
            skipped += 1
        else:
            requests.append(request)
    requests.sort(key=lambda r: r.start)
    return analyze_requests(requests, skipped, prices)


def analyze_requests(requests: list[Request], skipped: int = 0, prices: Prices | None = None) -> Analysis:
    """The headline (costs derived at ``prices``, never stored) and the findings of requests in time order."""
    return Analysis(requests=requests, headline=headline(requests, prices), findings=find(requests), skipped=skipped)
