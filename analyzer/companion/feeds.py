"""The feeds that watch the recorder, their ``ollama_*`` options and checks: declared once, in one order.

The recorder declares every option here in its ``load`` and checks every value with :func:`option_problem` (one
check for all of them); :class:`FeedSettings` is what the companion process is started with. Nothing here loads
the OpenTelemetry SDK or opens a sampler: the checks are cheap, so mitmdump starts fast with every feed off.
"""

from __future__ import annotations

import ipaddress
import json
import socket
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from analyzer.export.labels import DEFAULT_LABEL_LIMIT
from analyzer.export.settings import ExportConfigError, parse_listen, signal_endpoint
from analyzer.live.paths import path_problem, socket_path
from analyzer.protocol.endpoints import OLLAMA_PORT
from analyzer.resources.registry import parse_spec
from analyzer.resources.timeline import DEFAULT_INTERVAL_MS


@dataclass(frozen=True)
class FeedOption:
    """One ``ollama_*`` option of a feed: as mitmproxy's ``loader.add_option`` takes it, plus its check."""

    name: str
    typespec: type
    default: Any
    help: str
    check: Callable[[Any], str | None] = lambda value: None


def _live_problem(value: Any) -> str | None:
    return path_problem(str(value))


def _otlp_problem(value: Any) -> str | None:
    try:
        if str(value).strip():
            signal_endpoint(str(value).strip(), "traces")
    except ExportConfigError as exc:
        return str(exc)
    return None


def _prometheus_problem(value: Any) -> str | None:
    address = str(value).strip()
    if not address:
        return None
    try:
        host, port = parse_listen(address)
        if host != "localhost":
            ipaddress.ip_address(host)
    except ExportConfigError as exc:
        return str(exc)
    except ValueError:
        return "the host must be an IP address (or localhost)"
    # The companion binds it; a port already taken is found here, so mitmdump refuses to start with one line.
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1" if host == "localhost" else host, port))
        except OSError as exc:
            return f"cannot listen on {address}: {exc.strerror or exc}"
    return None


def _label_limit_problem(value: Any) -> str | None:
    return None if isinstance(value, int) and value >= 1 else "must be a whole number, at least 1"


def _resources_problem(value: Any) -> str | None:
    try:
        parse_spec(str(value))
    except ValueError as exc:
        return str(exc)
    return None


def _interval_problem(value: Any) -> str | None:
    return None if 10 <= value <= 60_000 else "must be 10..60000 milliseconds"


FEED_OPTIONS: tuple[FeedOption, ...] = (
    FeedOption(
        "ollama_live",
        str,
        "",
        "Live feed for `ollama-wire top`: a Unix socket (mode 0600) publishing NDJSON events of every request as it "
        "runs. Empty: $XDG_RUNTIME_DIR/ollama-wire/live.sock, else ~/.cache/ollama-wire/live.sock; `off`: no feed; "
        "anything else: that socket path.",
        _live_problem,
    ),
    FeedOption(
        "ollama_otlp_endpoint",
        str,
        "",
        "OTLP/HTTP (protobuf) base URL such as http://127.0.0.1:4318: spans go to <base>/v1/traces, metrics to "
        "<base>/v1/metrics (OTEL_EXPORTER_OTLP_* variables honoured). Empty: no OTLP export.",
        _otlp_problem,
    ),
    FeedOption(
        "ollama_prometheus",
        str,
        "",
        "Listen address (host:port, e.g. 127.0.0.1:9464) of a Prometheus /metrics endpoint. Empty: off. "
        "Give a non-loopback host only to let other machines scrape it.",
        _prometheus_problem,
    ),
    FeedOption(
        "ollama_export_content",
        bool,
        False,
        "Put prompts and responses (after ollama_redact) on exported spans as gen_ai.input.messages / "
        "gen_ai.output.messages. Off: spans carry numbers and names only.",
    ),
    FeedOption(
        "ollama_label_limit",
        int,
        DEFAULT_LABEL_LIMIT,
        "Distinct values kept per metric label taken from traffic (the model, error.type, server.address); "
        "later new values are recorded as 'other' and counted in ollama.export.label_values_folded, so no "
        "client can grow the number of series.",
        _label_limit_problem,
    ),
    FeedOption(
        "ollama_resources",
        str,
        "auto",
        "Resource samplers that fill each record's GPU, power, energy, CPU and memory columns: auto (every source "
        "that works on this machine except ollama_ps, whose polling would show in captures), off, or a "
        "comma-separated list of nvidia, macmon, powermetrics, process, host, ollama_ps. "
        "`ollama-wire resources --check` shows what each one sees.",
        _resources_problem,
    ),
    FeedOption(
        "ollama_resources_interval",
        int,
        DEFAULT_INTERVAL_MS,
        "Milliseconds between resource samples (10..60000).",
        _interval_problem,
    ),
)
FEED_OPTION_NAMES = tuple(option.name for option in FEED_OPTIONS)
_CHECKS = {option.name: option.check for option in FEED_OPTIONS}


def option_problem(name: str, value: Any) -> str | None:
    """What is wrong with ``value`` for the feed option ``name``, or None (also for names that are not feeds')."""
    check = _CHECKS.get(name)
    return check(value) if check is not None else None


@dataclass(frozen=True)
class FeedSettings:
    """What the companion runs, from the options: handed to it as one JSON argument."""

    log_dir: str
    live: str = ""  # the live socket path; "" = no live feed
    otlp_endpoint: str = ""
    prometheus: str = ""
    export_content: bool = False
    label_limit: int = DEFAULT_LABEL_LIMIT
    resources: str = "auto"
    resources_interval_ms: int = DEFAULT_INTERVAL_MS
    server_host: str = "127.0.0.1"  # the Ollama server whose process and /api/ps the samplers watch
    server_port: int = OLLAMA_PORT

    @classmethod
    def from_options(cls, options: Any, log_dir: str, server: tuple[str, int]) -> FeedSettings:
        live = socket_path(options.ollama_live)
        return cls(
            log_dir=log_dir,
            live=str(live) if live is not None else "",
            otlp_endpoint=options.ollama_otlp_endpoint.strip(),
            prometheus=options.ollama_prometheus.strip(),
            export_content=bool(options.ollama_export_content),
            label_limit=int(options.ollama_label_limit),
            resources=options.ollama_resources,
            resources_interval_ms=int(options.ollama_resources_interval),
            server_host=server[0],
            server_port=server[1],
        )

    @property
    def wants_resources(self) -> bool:
        return parse_spec(self.resources) != []

    @property
    def any_feed(self) -> bool:
        """Whether any feed is on (with none, no companion runs and the proxy writes the log itself)."""
        return bool(self.live or self.otlp_endpoint or self.prometheus or self.wants_resources)

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> FeedSettings:
        return cls(**json.loads(text))
