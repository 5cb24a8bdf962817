"""The OpenTelemetry SDK, set up once: providers, views with the convention's buckets, counting exporters.

:class:`Telemetry` owns a ``MeterProvider`` (histograms, the in-flight up-down counter, the dropped counter)
read by a periodic OTLP reader and/or a Prometheus reader served on its own loopback HTTP server, and a
``TracerProvider`` whose ``BatchSpanProcessor`` sends spans over OTLP/HTTP. Nothing here blocks its caller for
long: spans wait in the processor's bounded queue (a full queue drops the span, counted), the exporters run on
the SDK's own threads, and every span or data point an exporter could not deliver is added to
``ollama.export.dropped`` (attribute ``signal``). :meth:`Telemetry.shutdown` is bounded by its timeout whatever
the collector does. The standard ``OTEL_EXPORTER_OTLP_*``, ``OTEL_SERVICE_NAME``, ``OTEL_RESOURCE_ATTRIBUTES``,
``OTEL_BSP_*`` and ``OTEL_METRIC_EXPORT_*`` variables are honoured.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from opentelemetry.context import Context
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    MetricExportResult,
    MetricReader,
    MetricsData,
    PeriodicExportingMetricReader,
)
from opentelemetry.sdk.metrics.view import ExplicitBucketHistogramAggregation, View
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.id_generator import IdGenerator, RandomIdGenerator
from opentelemetry.trace import SpanKind, Status, StatusCode

from analyzer.export import semconv as sc
from analyzer.export.labels import DEFAULT_LABEL_LIMIT, LabelLimiter
from analyzer.export.mapping import Measurement, SpanData
from analyzer.export.settings import ExportConfigError, parse_listen, signal_endpoint

logger = logging.getLogger(__name__)
DEFAULT_SERVICE_NAME = "ollama-wire"
DEFAULT_SPAN_QUEUE = 2048  # OTEL_BSP_MAX_QUEUE_SIZE overrides it


def _env_int(name: str, default: int) -> int:
    try:
        return max(1, int(os.environ.get(name, "") or default))
    except ValueError:
        return default


def resource() -> Resource:
    """The resource: OTEL_RESOURCE_ATTRIBUTES / OTEL_SERVICE_NAME if given, service.name ``ollama-wire`` otherwise."""
    detected = Resource.create({}, schema_url=sc.SCHEMA_URL)
    name = str(detected.attributes.get(SERVICE_NAME, ""))
    if not name or name.startswith("unknown_service"):
        detected = detected.merge(Resource({SERVICE_NAME: DEFAULT_SERVICE_NAME}, sc.SCHEMA_URL))
    return detected


def views() -> list[View]:
    """One view per histogram with the convention's explicit bucket boundaries."""
    return [
        View(instrument_name=name, aggregation=ExplicitBucketHistogramAggregation(boundaries))
        for name, (_, _, boundaries) in sc.HISTOGRAMS.items()
    ]


class Drops:
    """What could not be exported, per signal; thread-safe; mirrored into the ``ollama.export.dropped`` counter."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.totals: dict[str, int] = {}
        self._sink: Callable[[int, str], None] | None = None

    def attach(self, sink: Callable[[int, str], None]) -> None:
        with self._lock:
            self._sink = sink
            pending = dict(self.totals)
        for signal, count in pending.items():
            sink(count, signal)

    def add(self, signal: str, count: int) -> None:
        if count <= 0:
            return
        with self._lock:
            self.totals[signal] = self.totals.get(signal, 0) + count
            sink = self._sink
        if sink is not None:
            sink(count, signal)

    def total(self) -> int:
        with self._lock:
            return sum(self.totals.values())


class CountingSpanExporter(OTLPSpanExporter):
    """The SDK's OTLP/HTTP span exporter, counting what it was handed and what it failed to deliver."""

    def __init__(self, drops: Drops, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.drops = drops
        self.handed = 0  # spans the batch processor took out of its queue (only its worker thread writes this)

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.handed += len(spans)
        try:
            result = super().export(spans)
        except Exception:
            result = SpanExportResult.FAILURE
        if result is not SpanExportResult.SUCCESS:
            self.drops.add("traces", len(spans))
        return result


def _points(metrics_data: MetricsData) -> int:
    return sum(
        len(metric.data.data_points)
        for resource_metrics in metrics_data.resource_metrics
        for scope in resource_metrics.scope_metrics
        for metric in scope.metrics
    )


class CountingMetricExporter(OTLPMetricExporter):
    """The SDK's OTLP/HTTP metric exporter, counting the data points it failed to deliver."""

    def __init__(self, drops: Drops, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.drops = drops

    def export(
        self, metrics_data: MetricsData, timeout_millis: float | None = 10000, **kwargs: Any
    ) -> MetricExportResult:
        try:
            result = super().export(metrics_data, timeout_millis=timeout_millis, **kwargs)
        except Exception:
            result = MetricExportResult.FAILURE
        if result is not MetricExportResult.SUCCESS:
            self.drops.add("metrics", _points(metrics_data))
        return result


class RecordIdGenerator(IdGenerator):
    """Ids derived from the record id for the span being started (see :meth:`using`), random otherwise."""

    def __init__(self) -> None:
        self._random = RandomIdGenerator()
        self._next = threading.local()

    @contextmanager
    def using(self, trace_id: int, span_id: int) -> Iterator[None]:
        self._next.ids = (trace_id, span_id)
        try:
            yield
        finally:
            self._next.ids = None

    def generate_trace_id(self) -> int:
        ids = getattr(self._next, "ids", None)
        return ids[0] if ids else self._random.generate_trace_id()

    def generate_span_id(self) -> int:
        ids = getattr(self._next, "ids", None)
        return ids[1] if ids else self._random.generate_span_id()


@dataclass
class PrometheusServer:
    """The ``/metrics`` HTTP server of one registry (prometheus_client's, on a daemon thread)."""

    server: Any
    thread: threading.Thread

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def start_prometheus(address: str) -> tuple[MetricReader, PrometheusServer]:
    """A Prometheus reader with its own registry, served at ``http://address/metrics``."""
    from opentelemetry.exporter.prometheus import PrometheusMetricReader
    from prometheus_client import CollectorRegistry, start_http_server

    host, port = parse_listen(address)
    registry = CollectorRegistry(auto_describe=True)
    reader = PrometheusMetricReader(registry=registry, scope_info_enabled=False)
    try:
        server, thread = start_http_server(port, addr=host, registry=registry)
    except OSError as exc:
        reader.shutdown()
        raise ExportConfigError(f"cannot listen on {address}: {exc.strerror or exc}") from exc
    return reader, PrometheusServer(server, thread)


class Telemetry:
    """Spans and metrics for records, to OTLP (``otlp_endpoint``) and/or Prometheus (``prometheus_address``).

    ``in_flight`` (optional) returns the open interactions per ``gen_ai.operation.name``; it is read by the
    metric readers, never on the traffic path. ``metrics=False`` skips metrics altogether (replay).
    ``label_limit``: distinct values kept per traffic-chosen label (``labels``, see ``analyzer.export.labels``);
    the folds are counted in ``ollama.export.label_values_folded``.
    """

    def __init__(
        self,
        *,
        otlp_endpoint: str = "",
        prometheus_address: str = "",
        metrics: bool = True,
        span_queue: int | None = None,
        in_flight: Callable[[], dict[str, int]] | None = None,
        label_limit: int = DEFAULT_LABEL_LIMIT,
    ) -> None:
        # The SDK logs every failed batch (and every retry) at error level; the drops are reported instead,
        # counted and rate-limited, so a collector that is down does not flood the proxy's console.
        logging.getLogger("opentelemetry").setLevel(logging.CRITICAL)
        self.drops = Drops()
        self.labels = LabelLimiter(label_limit)
        self.resource = resource()
        self.span_queue = span_queue or _env_int("OTEL_BSP_MAX_QUEUE_SIZE", DEFAULT_SPAN_QUEUE)
        self.prometheus: PrometheusServer | None = None
        self._in_flight = in_flight
        self._in_flight_seen: set[str] = set(sc.INFERENCE_OPERATIONS)
        self.meter_provider: MeterProvider | None = None
        self.tracer_provider: TracerProvider | None = None
        self.span_exporter: CountingSpanExporter | None = None
        self.spans_started = 0
        self._histograms: dict[str, Any] = {}
        readers: list[MetricReader] = []
        if metrics and prometheus_address:  # first: a busy port fails before any thread is started
            reader, self.prometheus = start_prometheus(prometheus_address)
            readers.append(reader)
        if metrics and otlp_endpoint:
            exporter = CountingMetricExporter(self.drops, endpoint=signal_endpoint(otlp_endpoint, "metrics"))
            readers.append(PeriodicExportingMetricReader(exporter))
        if readers:
            self._start_metrics(readers)
        if otlp_endpoint:
            self.ids = RecordIdGenerator()
            self.tracer_provider = TracerProvider(resource=self.resource, id_generator=self.ids, shutdown_on_exit=False)
            self.span_exporter = CountingSpanExporter(self.drops, endpoint=signal_endpoint(otlp_endpoint, "traces"))
            self.span_processor = BatchSpanProcessor(
                self.span_exporter,
                max_queue_size=self.span_queue,
                max_export_batch_size=min(_env_int("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", 512), self.span_queue),
            )
            self.tracer_provider.add_span_processor(self.span_processor)
            self.tracer = self.tracer_provider.get_tracer(
                sc.INSTRUMENTATION_NAME, sc.SEMCONV_VERSION, schema_url=sc.SCHEMA_URL
            )

    def _start_metrics(self, readers: list[MetricReader]) -> None:
        provider = MeterProvider(resource=self.resource, metric_readers=readers, views=views(), shutdown_on_exit=False)
        meter = provider.get_meter(sc.INSTRUMENTATION_NAME, sc.SEMCONV_VERSION, schema_url=sc.SCHEMA_URL)
        for name, (unit, description, _) in sc.HISTOGRAMS.items():
            self._histograms[name] = meter.create_histogram(name, unit=unit, description=description)
        dropped = meter.create_counter(
            sc.OLLAMA_EXPORT_DROPPED, unit="{item}", description="Spans, data points or records not exported."
        )
        self.drops.attach(lambda count, signal: dropped.add(count, {sc.DROPPED_SIGNAL: signal}))
        folded = meter.create_counter(
            sc.OLLAMA_LABEL_VALUES_FOLDED,
            unit="{interaction}",
            description="Interactions whose value of a traffic-chosen label (attribute 'label') was beyond the "
            "label limit and was recorded as 'other'.",
        )
        self.labels.attach(lambda count, label: folded.add(count, {sc.FOLDED_LABEL: label}))
        meter.create_observable_up_down_counter(
            sc.OLLAMA_REQUESTS_IN_FLIGHT,
            callbacks=[self._observe_in_flight],
            unit="{request}",
            description="Interactions whose response has not ended yet.",
        )
        self.meter_provider = provider

    def _observe_in_flight(self, options: CallbackOptions) -> Iterable[Observation]:
        counts = self._in_flight() if self._in_flight else {}
        self._in_flight_seen.update(counts)  # every inference operation always has a series (0 when idle)
        return [
            Observation(counts.get(op, 0), {sc.OPERATION_NAME: op, sc.PROVIDER_NAME: sc.PROVIDER})
            for op in sorted(self._in_flight_seen)
        ]

    # -- recording -----------------------------------------------------------------------------------------
    @property
    def spans_queued(self) -> int:
        """Spans waiting in the batch processor's queue."""
        handed = self.span_exporter.handed if self.span_exporter else 0
        return self.spans_started - handed

    def span_room(self) -> bool:
        return self.spans_queued < self.span_queue

    def record_span(self, data: SpanData) -> bool:
        """Queue one span for export; False (and counted as dropped) when the queue is full."""
        if self.tracer_provider is None:
            return False
        if not self.span_room():
            self.drops.add("traces", 1)
            return False
        with self.ids.using(data.trace_id, data.span_id):
            span = self.tracer.start_span(
                data.name, context=Context(), kind=SpanKind.CLIENT, attributes=data.attributes, start_time=data.start_ns
            )
        for event in data.events:
            span.add_event(event.name, event.attributes, event.timestamp_ns)
        if data.error is not None:
            span.set_status(Status(StatusCode.ERROR, data.error))
        self.spans_started += 1
        span.end(end_time=data.end_ns)
        return True

    def record_measurements(self, measurements: Iterable[Measurement]) -> None:
        for measurement in measurements:
            histogram = self._histograms.get(measurement.metric)
            if histogram is not None:
                histogram.record(measurement.value, measurement.attributes)

    def flush(self, timeout_s: float) -> None:
        """Export what is queued now (bounded by ``timeout_s``, on a helper thread)."""
        self._bounded(self._flush_all, timeout_s)

    def _flush_all(self) -> None:
        if self.tracer_provider is not None:
            self.tracer_provider.force_flush()
        if self.meter_provider is not None:
            self.meter_provider.force_flush()

    def shutdown(self, timeout_s: float = 3.0) -> bool:
        """Flush and stop; returns within about ``timeout_s`` even if the collector hangs (True if all stopped)."""
        if self.prometheus is not None:
            self.prometheus.close()
            self.prometheus = None
        return self._bounded(self._shutdown_all, timeout_s)

    def _shutdown_all(self) -> None:
        if self.tracer_provider is not None:
            self.tracer_provider.shutdown()
        if self.meter_provider is not None:
            self.meter_provider.shutdown()

    @staticmethod
    def _bounded(work: Callable[[], None], timeout_s: float) -> bool:
        # The SDK's own shutdown waits up to 30 s per processor; a daemon thread keeps ours bounded (a stuck
        # export is abandoned with the process).
        thread = threading.Thread(target=work, name="ollama-export-stop", daemon=True)
        thread.start()
        thread.join(timeout_s)
        return not thread.is_alive()
