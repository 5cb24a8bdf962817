"""Byte-exact helpers for what Go's encoders put on the wire: JSON, RFC 3339 timestamps, HTTP dates."""

from __future__ import annotations

import json
import re
import time
from email.utils import formatdate
from typing import Any

# Go's encoding/json escapes these even though JSON does not require it (HTML safety).
_GO_ESCAPES = {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"}


def go_json(value: Any) -> bytes:
    """Encode ``value`` the way Go's ``json.Marshal`` does: compact, UTF-8, with ``<``, ``>``, ``&`` escaped."""
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    for char, escaped in _GO_ESCAPES.items():
        if char in text:
            text = text.replace(char, escaped)
    return text.encode("utf-8")


def rfc3339_nano(epoch_ns: int | None = None) -> str:
    """Format a UTC time like Go's ``time.RFC3339Nano``: up to nine fraction digits, trailing zeros trimmed."""
    ns = time.time_ns() if epoch_ns is None else epoch_ns
    seconds, fraction = divmod(ns, 1_000_000_000)
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
    digits = f"{fraction:09d}".rstrip("0")
    return f"{stamp}.{digits}Z" if digits else f"{stamp}Z"


def http_date(epoch_s: float | None = None) -> str:
    """An HTTP ``Date`` header value, e.g. ``Thu, 01 Aug 2024 12:00:00 GMT`` (Go's ``http.TimeFormat``)."""
    return formatdate(epoch_s, usegmt=True)


_DURATION_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)")


def go_duration_s(text: str) -> float:
    """Seconds in a Go ``time.ParseDuration`` string (``"5m"``, ``"1h30m"``, ``"-1s"``, ``"0"``).

    Raises ValueError with Go's message for anything else (a bare ``"300"`` has no unit).
    """
    body = text[1:] if text[:1] in "+-" else text
    if body == "0":
        return 0.0
    if not body:
        raise ValueError(f'time: invalid duration "{text}"')
    position, total = 0, 0.0
    while position < len(body):
        match = _DURATION_PART.match(body, position)
        if match is None:
            if re.match(r"(\d+(?:\.\d*)?|\.\d+)$", body[position:]):
                raise ValueError(f'time: missing unit in duration "{text}"')
            raise ValueError(f'time: invalid duration "{text}"')
        total += float(match.group(1)) * _DURATION_UNITS[match.group(2)]
        position = match.end()
    return -total if text.startswith("-") else total
