"""Export settings checked without loading the OpenTelemetry SDK: the OTLP URLs and the /metrics listen address.

Kept apart from ``telemetry`` so the addon can validate its options (and mitmdump start) without importing the
SDK when export is off.
"""

from __future__ import annotations

import os

SIGNAL_PATHS = {"traces": "v1/traces", "metrics": "v1/metrics"}


class ExportConfigError(ValueError):
    """A bad export setting (endpoint, listen address); the message names it."""


def signal_endpoint(base: str, signal: str) -> str:
    """Where ``signal`` (traces/metrics) goes for the base URL ``base``.

    The SDK exporters append ``/v1/<signal>`` only when they read ``OTEL_EXPORTER_OTLP_ENDPOINT`` themselves; an
    endpoint given in code is used as is. So the path is added here, unless ``OTEL_EXPORTER_OTLP_<SIGNAL>_ENDPOINT``
    names the full URL (the specification's precedence).
    """
    specific = os.environ.get(f"OTEL_EXPORTER_OTLP_{signal.upper()}_ENDPOINT")
    if specific:
        return specific
    if not base.startswith(("http://", "https://")):
        raise ExportConfigError(f"{base!r} is not an http:// or https:// URL")
    return f"{base.rstrip('/')}/{SIGNAL_PATHS[signal]}"


def parse_listen(address: str) -> tuple[str, int]:
    """``host:port`` / ``[v6]:port`` / ``:port`` (loopback) → (host, port)."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ExportConfigError(f"{address!r} is not host:port")
    host = host.strip("[]") or "127.0.0.1"
    return host, int(port)
