"""The live feed's events: one compact JSON object per line (NDJSON), documented in docs/live.md.

``hello`` (on connect), ``start`` (request known), ``progress`` (coalesced, at most ~10 per second per request),
``end`` (the full record), ``dropped`` (this subscriber lost events; the in-flight state follows again).
Times are POSIX seconds; durations milliseconds. Prompt and response text honour the recorder's redaction.
"""

from __future__ import annotations

import json
import re
import time
from typing import Any

from analyzer.protocol.interaction import InteractionBuilder
from analyzer.protocol.record import InteractionRecord
from analyzer.protocol.redact import REDACT_DROP, REDACT_HASH, digest
from analyzer.protocol.request_content import RequestContent
from analyzer.protocol.timing import ms_between

FEED_VERSION = 1
PREVIEW_CHARS = 120
PROMPT_CHARS = 4000
TAIL_CHARS = 2000
MAX_PARSED_REQUEST = 1024 * 1024  # bigger request bodies are not parsed on the proxy's loop (see start_event)
EDGE_BYTES = 64 * 1024
_MODEL = re.compile(rb'"model"\s*:\s*"([^"\\]{1,200})"')
_STREAM = re.compile(rb'"stream"\s*:\s*(true|false)')

HELLO = "hello"
START = "start"
PROGRESS = "progress"
END = "end"
DROPPED = "dropped"
EVENT_TYPES = (HELLO, START, PROGRESS, END, DROPPED)


def encode(event: dict[str, Any]) -> bytes:
    """One event as an NDJSON line."""
    return (json.dumps(event, ensure_ascii=False, separators=(",", ":")) + "\n").encode("utf-8")


def decode(line: bytes | str) -> dict[str, Any] | None:
    """An event from one line, or None when the line is not a JSON object with a known ``event``."""
    try:
        event = json.loads(line)
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(event, dict) or event.get("event") not in EVENT_TYPES:
        return None
    return event


def one_line(text: str, limit: int = PREVIEW_CHARS) -> str:
    """``text`` with whitespace runs collapsed to one space, cut to ``limit`` characters (with an ellipsis)."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def _shown_text(text: str | None, redaction: str, limit: int) -> str | None:
    """What the feed may show of a prompt/response: as the log would keep it (hash/drop honoured)."""
    if text is None or redaction == REDACT_DROP:
        return None
    if redaction == REDACT_HASH:
        return digest(text) if text else text
    return text[:limit]


def hello_event(in_flight: int, pid: int, now: float | None = None) -> dict[str, Any]:
    return {"event": HELLO, "version": FEED_VERSION, "time": now or time.time(), "pid": pid, "in_flight": in_flight}


def _large_request(builder: InteractionBuilder) -> RequestContent:
    """Model (and stream) of a request too big to parse on the proxy's loop: a look at its first and last bytes."""
    head, tail = builder.request_edges(EDGE_BYTES)
    model = _MODEL.search(head) or _MODEL.search(tail)
    stream = _STREAM.search(head) or _STREAM.search(tail)
    return RequestContent(
        model=model.group(1).decode("utf-8", "replace") if model else None,
        stream=stream.group(1) == b"true" if stream else None,
    )


def start_event(builder: InteractionBuilder, now: float | None = None) -> dict[str, Any]:
    """``start``: who asked what, as soon as the request is known.

    A request body over ``MAX_PARSED_REQUEST`` bytes (long contexts, images) is not parsed here — the publisher
    runs on the proxy's event loop — so its prompt shows as its size only."""
    size = builder.in_flight().request_bytes
    if size > MAX_PARSED_REQUEST:
        request = _large_request(builder)
        prompt = None if builder.redaction == REDACT_DROP else f"({size / 1_048_576:.1f} MB request)"
    else:
        request = builder.request_so_far()
        prompt = _shown_text(request.prompt, builder.redaction, PROMPT_CHARS)
    endpoint = builder.endpoint
    return {
        "event": START,
        "id": builder.record_id,
        "time": now or time.time(),
        "started_at": builder.started_at,
        "client": builder.client,
        "server": builder.server,
        "method": builder.method,
        "path": builder.path,
        "api": endpoint.api if endpoint else "",
        "kind": endpoint.kind if endpoint else "",
        "model": request.model,
        "stream": request.stream,
        "prompt_preview": one_line(prompt) if prompt else prompt,
        "prompt": prompt,
    }


def progress_event(builder: InteractionBuilder, now: float | None = None, *, with_tail: bool = True) -> dict[str, Any]:
    """``progress``: the state so far (tokens, rates, TTFT once known, bytes; pull layers).

    ``with_tail`` adds ``response_tail`` (the publisher does so at most once a second per request: it is most of
    the event's size, and only a details view reads it)."""
    now = now or time.time()
    state = builder.in_flight()
    event: dict[str, Any] = {
        "event": PROGRESS,
        "id": builder.record_id,
        "time": now,
        "elapsed_ms": ms_between(state.started_at, now),
        "status": state.status,
        "ttfb_ms": ms_between(state.started_at, state.response_at),
        "ttft_ms": ms_between(state.started_at, state.first_token_at),
        "tokens": state.tokens,
        "chunks": state.chunks,
        "wire_tokens_per_s": state.wire_tokens_per_s,
        "bytes": state.response_bytes,
        "request_bytes": state.request_bytes,
        "error": state.error,
    }
    if with_tail:
        event["response_tail"] = _shown_text(builder.response_tail(TAIL_CHARS), builder.redaction, TAIL_CHARS)
    if state.layers or (builder.endpoint is not None and builder.endpoint.kind in ("pull", "push", "create")):
        layers = [{"digest": d, "completed": done, "total": total} for d, (done, total) in state.layers.items()]
        event["pull"] = {
            "status": state.progress_status,
            "completed": sum(layer["completed"] for layer in layers),
            "total": sum(layer["total"] for layer in layers),
            "layers": layers,
        }
    return event


def end_event(record: InteractionRecord, now: float | None = None) -> dict[str, Any]:
    """``end``: the finished record, exactly as the log gets it."""
    return {"event": END, "id": record.id, "time": now or time.time(), "record": record.to_dict()}


def dropped_event(count: int, in_flight: list[str], now: float | None = None) -> dict[str, Any]:
    """``dropped``: ``count`` events were not sent to this subscriber (it read too slowly); ``in_flight`` lists
    the ids still running (their ``start``/``progress`` follow), so ids missing there have ended meanwhile."""
    return {"event": DROPPED, "time": now or time.time(), "count": count, "in_flight": in_flight}
