"""The export observer: watches interactions on the traffic path and exports their records off it.

On the traffic path it only does O(1) work: note an interaction as open (for ``ollama.requests.in_flight``),
and hand a finished record to a bounded queue — ``put_nowait``, a full queue drops the record and counts it
(``ollama.export.dropped{signal="records"}``). One worker thread, waking every ``DRAIN_EVERY_S`` (not at each
record: the next request of a client often follows at once), turns records into spans and histogram
measurements; the SDK's own threads send them. Drops are reported as a warning, at most every
``WARN_EVERY_S`` seconds, and in the metrics themselves.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from typing import TYPE_CHECKING

from analyzer.export import semconv as sc
from analyzer.export.labels import DEFAULT_LABEL_LIMIT
from analyzer.export.mapping import measurements, span_data
from analyzer.export.telemetry import Telemetry

if TYPE_CHECKING:
    from analyzer.protocol.interaction import InteractionBuilder
    from analyzer.protocol.record import InteractionRecord

logger = logging.getLogger(__name__)
DEFAULT_QUEUE = 4096
WARN_EVERY_S = 10.0
DRAIN_EVERY_S = 0.5


class ExportObserver:
    """Watches the recorder (an ``InteractionObserver``) and exports every finished record."""

    def __init__(
        self,
        *,
        otlp_endpoint: str = "",
        prometheus_address: str = "",
        content: bool = False,
        queue_size: int = DEFAULT_QUEUE,
        label_limit: int = DEFAULT_LABEL_LIMIT,
    ) -> None:
        self.otlp_endpoint = otlp_endpoint
        self.content = content
        self._open: dict[str, str] = {}  # record id -> gen_ai.operation.name, while the response runs
        self._queue: queue.Queue[InteractionRecord] = queue.Queue(maxsize=queue_size)
        self._lost = 0  # records the full queue refused (written on the traffic path only)
        self._lost_reported = 0
        self._warned_total = 0
        self._warned_at = 0.0
        self.exported = 0
        self.telemetry = Telemetry(
            otlp_endpoint=otlp_endpoint,
            prometheus_address=prometheus_address,
            in_flight=self.in_flight,
            label_limit=label_limit,
        )
        self._stop = threading.Event()
        self._worker = threading.Thread(target=self._run, name="ollama-export", daemon=True)
        self._worker.start()

    # -- the observer (traffic path: O(1), never blocks) ---------------------------------------------------
    def interaction_started(self, builder: InteractionBuilder) -> None:
        endpoint = builder.endpoint
        operation = sc.OPERATION_BY_KIND.get(endpoint.kind) if endpoint else None
        if operation is not None:
            self._open[builder.record_id] = operation

    def interaction_progressed(self, builder: InteractionBuilder) -> None:
        pass

    def enrich_record(self, record: InteractionRecord) -> None:
        pass  # owns no column

    def interaction_finished(self, record: InteractionRecord) -> None:
        self._open.pop(record.id, None)
        try:
            self._queue.put_nowait(record)
        except queue.Full:
            self._lost += 1

    # -- read by the metric readers -------------------------------------------------------------------------
    def in_flight(self) -> dict[str, int]:
        """Open interactions per operation."""
        counts: dict[str, int] = {}
        for operation in list(self._open.values()):
            counts[operation] = counts.get(operation, 0) + 1
        return counts

    # -- the worker -------------------------------------------------------------------------------------------
    def _run(self) -> None:
        # Wake every DRAIN_EVERY_S and drain, rather than at each record: a client's next request usually
        # follows the end of the previous one at once, and the export work must not land in its first-token time.
        while not self._stop.wait(DRAIN_EVERY_S):
            self._drain()
            self._account()

    def _drain(self) -> None:
        while not self._stop.is_set():
            try:
                record = self._queue.get_nowait()
            except queue.Empty:
                return
            self.export(record)

    def export(self, record: InteractionRecord) -> None:
        """Span and measurements for one record (the worker's job; never raises)."""
        try:
            if self.telemetry.tracer_provider is not None:
                self.telemetry.record_span(span_data(record, content=self.content))
            self.telemetry.record_measurements(measurements(record, self.telemetry.labels))
            self.exported += 1
        except Exception:
            logger.warning("ollama_export: could not export record %s", record.id, exc_info=True)

    def _account(self) -> None:
        lost = self._lost
        if lost > self._lost_reported:
            self.telemetry.drops.add("records", lost - self._lost_reported)
            self._lost_reported = lost
        total = self.telemetry.drops.total()
        now = time.monotonic()
        if total > self._warned_total and now - self._warned_at >= WARN_EVERY_S:
            self._warned_total, self._warned_at = total, now
            logger.warning("ollama_export: %s", self.drop_summary())

    def drop_summary(self) -> str:
        totals = self.telemetry.drops.totals
        parts = ", ".join(f"{count} {signal}" for signal, count in sorted(totals.items())) or "nothing"
        where = f" (collector {self.otlp_endpoint} down or slow?)" if self.otlp_endpoint else ""
        return f"could not export {parts} so far{where}; see ollama_export_dropped_total"

    def close(self, timeout_s: float = 3.0) -> None:
        """Export what is queued, then stop; bounded by about ``timeout_s`` whatever the collector does."""
        deadline = time.monotonic() + timeout_s
        self._stop.set()
        self._worker.join(max(0.1, timeout_s / 3))
        while time.monotonic() < deadline - timeout_s / 2:
            try:
                self.export(self._queue.get_nowait())
            except queue.Empty:
                break
        self._account()
        if self.telemetry.drops.total():
            logger.warning("ollama_export: %s", self.drop_summary())
        self.telemetry.shutdown(max(0.1, deadline - time.monotonic()))
