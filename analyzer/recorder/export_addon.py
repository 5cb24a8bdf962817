"""The export addon: the recorder's interactions as OpenTelemetry GenAI spans and metrics.

    mitmdump ... -s addons/ollama_log.py --set ollama_otlp_endpoint=http://127.0.0.1:4318 \
        --set ollama_prometheus=127.0.0.1:9464

It observes the recorder through the shared :class:`~analyzer.protocol.observer.ObserverHub`; all the work
(``analyzer.export.observer``) runs on its own threads behind a bounded queue, so a collector that is down, slow or
failing costs drops (counted, reported), never a slower stream. Both exports are off by default.
"""

from __future__ import annotations

import ipaddress
import logging
from typing import TYPE_CHECKING

from mitmproxy import ctx, exceptions

from analyzer.export.labels import DEFAULT_LABEL_LIMIT
from analyzer.export.settings import ExportConfigError, parse_listen, signal_endpoint
from analyzer.protocol.observer import ObserverHub
from analyzer.protocol.record import format_address

if TYPE_CHECKING:
    from analyzer.export.observer import ExportObserver

logger = logging.getLogger(__name__)
OPTION_NAMES = ("ollama_otlp_endpoint", "ollama_prometheus", "ollama_export_content", "ollama_label_limit")
SHUTDOWN_TIMEOUT_S = 3.0


def option_problem(name: str, value: object) -> str | None:
    """What is wrong with ``value`` for one of this addon's options, or None (also for other options)."""
    if name == "ollama_label_limit":
        return None if isinstance(value, int) and value >= 1 else "must be a whole number, at least 1"
    try:
        if name == "ollama_otlp_endpoint" and str(value).strip():
            signal_endpoint(str(value).strip(), "traces")
        elif name == "ollama_prometheus" and str(value).strip():
            host, _ = parse_listen(str(value).strip())
            if host != "localhost":
                ipaddress.ip_address(host)
    except ExportConfigError as exc:
        return str(exc)
    except ValueError:
        return "the host must be an IP address (or localhost)"
    return None


class OllamaExport:
    """Builds (and rebuilds on option changes) one :class:`ExportObserver` and adds it to the hub."""

    def __init__(self, hub: ObserverHub) -> None:
        self.hub = hub
        self.live: ExportObserver | None = None

    def load(self, loader) -> None:
        loader.add_option(
            "ollama_otlp_endpoint",
            str,
            "",
            "OTLP/HTTP (protobuf) base URL such as http://127.0.0.1:4318: spans go to <base>/v1/traces, metrics to "
            "<base>/v1/metrics (OTEL_EXPORTER_OTLP_* variables honoured). Empty: no OTLP export.",
        )
        loader.add_option(
            "ollama_prometheus",
            str,
            "",
            "Listen address (host:port, e.g. 127.0.0.1:9464) of a Prometheus /metrics endpoint. Empty: off. "
            "Give a non-loopback host only to let other machines scrape it.",
        )
        loader.add_option(
            "ollama_export_content",
            bool,
            False,
            "Put prompts and responses (after ollama_redact) on exported spans as gen_ai.input.messages / "
            "gen_ai.output.messages. Off: spans carry numbers and names only.",
        )
        loader.add_option(
            "ollama_label_limit",
            int,
            DEFAULT_LABEL_LIMIT,
            "Distinct values kept per metric label taken from traffic (the model, error.type, server.address); "
            "later new values are recorded as 'other' and counted in ollama.export.label_values_folded, so no "
            "client can grow the number of series.",
        )

    def configure(self, updated: set[str]) -> None:
        if not updated.intersection(OPTION_NAMES):
            return
        endpoint, prometheus = ctx.options.ollama_otlp_endpoint.strip(), ctx.options.ollama_prometheus.strip()
        for name in OPTION_NAMES:
            problem = option_problem(name, getattr(ctx.options, name))
            if problem:
                raise exceptions.OptionsError(f"{name}={getattr(ctx.options, name)}: {problem}")
        self.stop()
        if not endpoint and not prometheus:
            return
        from analyzer.export.observer import ExportObserver  # the SDK loads only when export is on

        try:
            live = ExportObserver(
                otlp_endpoint=endpoint,
                prometheus_address=prometheus,
                content=ctx.options.ollama_export_content,
                label_limit=ctx.options.ollama_label_limit,
            )
        except ExportConfigError as exc:
            # Logged, not raised: at startup mitmproxy then exits with this one line (a raise would print a
            # traceback from the script loader); later (a :set in the console) the proxy goes on without export.
            logger.error("ollama_log: ollama_prometheus=%s: %s", prometheus, exc)
            return
        self.live = live
        self.hub.add(live)
        if live.telemetry.prometheus is not None:
            host, _ = parse_listen(prometheus)
            address = format_address(host, live.telemetry.prometheus.port)
            logger.info("ollama_export: Prometheus metrics at http://%s/metrics", address)
        if endpoint:
            logger.info("ollama_export: OTLP to %s", endpoint)

    def stop(self) -> None:
        live, self.live = self.live, None
        if live is not None:
            self.hub.remove(live)
            live.close(SHUTDOWN_TIMEOUT_S)

    def done(self) -> None:
        self.stop()
