"""Replay stored records as spans over OTLP/HTTP, with their original timestamps.

Span and trace ids derive from each record's id (``mapping.ids_for``), so a rerun — or a replay of a log the
live export already sent — produces the same spans again instead of new ones: backends that deduplicate by id
keep one. Metrics are not replayed: an OTLP data point carries the time it was collected, not the record's.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from analyzer.export.mapping import span_data
from analyzer.export.telemetry import Telemetry
from analyzer.protocol.record import InteractionRecord

FLUSH_TIMEOUT_S = 30.0


@dataclass
class ReplayResult:
    records: int
    sent: int
    failed: int


def replay(
    records: Iterable[InteractionRecord], endpoint: str, *, content: bool = False, batch: int = 512
) -> ReplayResult:
    """Send one span per record to ``endpoint`` (an OTLP/HTTP base URL); waits until sent or failed (bounded)."""
    telemetry = Telemetry(otlp_endpoint=endpoint, metrics=False, span_queue=batch * 4)
    count = 0
    try:
        for record in records:
            if not record.started_at:
                continue
            if not telemetry.span_room():  # a replay may wait for the collector; the live export may not
                telemetry.flush(FLUSH_TIMEOUT_S)
            telemetry.record_span(span_data(record, content=content))
            count += 1
    finally:
        telemetry.shutdown(FLUSH_TIMEOUT_S)
    failed = min(count, telemetry.drops.totals.get("traces", 0))
    return ReplayResult(records=count, sent=count - failed, failed=failed)
