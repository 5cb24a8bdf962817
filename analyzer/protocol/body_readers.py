"""One reader per way of reading a response body: NDJSON, SSE, one JSON object, plain text, and sniffing.

The Content-Type picks the reader (:func:`reader_for`); a capture that began inside a body has no headers, so
:class:`SniffReader` waits for a whole line and then hands over to the NDJSON or SSE reader. Every reader has
the same three steps — ``feed`` (body bytes in any fragmentation, with their arrival time), ``flush`` (end of
body: parse what is left) and ``ended`` (did the body itself say it was finished?) — and writes what it reads
into the shared :class:`ObjectSink`, which owns the counters the record reports.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from typing import Any, Protocol

import msgspec

from analyzer.protocol.endpoints import API_OLLAMA, Endpoint
from analyzer.protocol.framing import LineSplitter, SseSplitter
from analyzer.protocol.record import FLAG_TRUNCATED_BODY, FLAG_UNPARSABLE_LINE
from analyzer.protocol.response_content import ResponseContent
from analyzer.protocol.timing import GapStats

# One stream line / SSE event, and one non-streamed JSON body (embeddings can be several MB): longer ones
# are dropped and flagged truncated_body. Independent of the text cap, which bounds what is *kept*.
MAX_LINE_BYTES = 8 * 1024 * 1024
MAX_JSON_BODY_BYTES = 32 * 1024 * 1024
# A mid-response capture needs this much of the line after the cut one to tell "data:" from "{".
_SNIFF_MIN_NEXT_LINE = 6
_raw_decode = json.JSONDecoder().raw_decode  # json.loads' own decoder, without its per-call checks
_SNIFF_LOOKAHEAD = 16  # bytes after the first newline kept for the decision
_SNIFF_MAX_WAIT_BYTES = 64 * 1024

MODE_NDJSON = "ndjson"
MODE_SSE = "sse"
MODE_JSON = "json"
MODE_TEXT = "text"

Apply = Callable[[dict[str, Any]], bool]
# The per-line decoder: msgspec reads the bytes as they are (no str step) about 3x faster than json. Whatever it
# refuses (lone surrogates, NaN/Infinity, 1e400, bad UTF-8, trailing bytes, deep nesting) goes to json, which
# decides as before: where msgspec accepts a line, both give the same object, so records do not change.
_fast_decode = msgspec.json.Decoder().decode


def body_mode(content_type: str | None) -> str:
    """How to read a response body, told by its Content-Type (never by its framing)."""
    ct = (content_type or "").lower()
    if "ndjson" in ct:
        return MODE_NDJSON
    if "event-stream" in ct:
        return MODE_SSE
    if "json" in ct:
        return MODE_JSON
    return MODE_TEXT


class ObjectSink:
    """Where response objects land: the content they carry, how many there were, when tokens arrived."""

    def __init__(self, content: ResponseContent, gaps: GapStats, add_flags: Callable[[Iterable[str]], None]) -> None:
        self.content = content
        self.gaps = gaps
        self.add_flags = add_flags
        self.chunks = 0
        self.had_error_line = False
        # Mid-response capture: the first unit may be the tail of a line. It is kept when it parses as a
        # whole object (the capture started on a line boundary) and dropped quietly when it does not.
        self.first_unit_may_be_partial = False

    def take_stream_object(self, raw: bytes, at: float, apply: Apply) -> None:
        """One stream object (NDJSON line or SSE data), applied; a token-bearing one is timed at ``at``."""
        first_may_be_partial, self.first_unit_may_be_partial = self.first_unit_may_be_partial, False
        try:
            obj = _fast_decode(raw)
        except (msgspec.MsgspecError, RecursionError):
            obj = _decode_strictly_as_json(raw)
        if not isinstance(obj, dict):
            if not first_may_be_partial:
                self.add_flags([FLAG_UNPARSABLE_LINE])
            return
        self.chunks += 1
        if obj.get("error") is not None:
            self.had_error_line = True
        if apply(obj):
            self.gaps.add(at)


def _decode_strictly_as_json(raw: bytes) -> Any:
    """One stream unit as Python's json reads it, or None when it is not exactly one JSON value."""
    try:
        text = raw.decode("utf-8")  # str in: json.loads(bytes) sniffs the encoding on every call
        obj, end = _raw_decode(text)  # callers strip the unit, so no leading whitespace
    except (ValueError, UnicodeDecodeError, RecursionError):  # RecursionError: absurdly deep nesting
        return None
    return obj if end == len(text) else None  # something after the object: not one JSON value


class BodyReader(Protocol):
    """What the builder asks of a response body reader."""

    streaming: bool  # a stream of objects (NDJSON/SSE), as opposed to one body
    complete_without_end_marker: bool  # complete when the transport delivered it all (plain text)

    def feed(self, data: bytes, at: float) -> None:
        """A fragment of the decoded body, as it arrived at ``at``."""

    def flush(self, at: float) -> None:
        """End of body (``at`` = last byte): parse whatever is left."""

    def ended(self) -> bool:
        """Whether the body itself said it was finished (``done:true``, ``[DONE]``, a whole JSON body)."""

    def oversized(self) -> int:
        """How many units were too long to parse and were dropped."""


class NdjsonReader:
    """Native Ollama streams: one JSON object per ``\\n``-terminated line."""

    streaming = True
    complete_without_end_marker = False

    def __init__(self, sink: ObjectSink) -> None:
        self._take_object = sink.take_stream_object
        self._apply = sink.content.apply_native
        self._sink = sink
        self._lines = LineSplitter(MAX_LINE_BYTES)

    def feed(self, data: bytes, at: float) -> None:
        for line in self._lines.feed(data):
            self._take(line, at)

    def flush(self, at: float) -> None:
        rest = self._lines.flush()
        if rest is not None:
            self._take(rest, at)

    def ended(self) -> bool:
        return self._sink.content.done

    def oversized(self) -> int:
        return self._lines.oversized

    def _take(self, line: bytes, at: float) -> None:
        line = line.strip()
        if line:
            self._take_object(line, at, self._apply)


class SseReader:
    """OpenAI-compatible streams: ``data: <json>`` events ending with ``data: [DONE]``."""

    streaming = True
    complete_without_end_marker = False

    def __init__(self, sink: ObjectSink) -> None:
        self._take_object = sink.take_stream_object
        self._apply = sink.content.apply_openai
        self._events = SseSplitter(MAX_LINE_BYTES)
        self._done = False

    def feed(self, data: bytes, at: float) -> None:
        for event in self._events.feed(data):
            self._take(event, at)

    def flush(self, at: float) -> None:
        for event in self._events.flush():
            self._take(event, at)

    def ended(self) -> bool:
        return self._done

    def oversized(self) -> int:
        return self._events.oversized_total

    def _take(self, event: bytes, at: float) -> None:
        payload = event.strip()
        if payload == b"[DONE]":
            self._done = True
        else:
            self._take_object(payload, at, self._apply)


class _CappedBody:
    """A whole body kept up to ``cap`` bytes; what is cut is flagged ``truncated_body``."""

    streaming = False

    def __init__(self, sink: ObjectSink, status: int | None, cap: int) -> None:
        self._sink = sink
        self._status = status
        self._cap = cap
        self._body = bytearray()
        self._truncated = False

    def feed(self, data: bytes, at: float) -> None:
        room = self._cap - len(self._body)
        if len(data) > room:
            self._truncated = True
            self._sink.add_flags([FLAG_TRUNCATED_BODY])
            data = data[: max(room, 0)]
        self._body += data

    def oversized(self) -> int:
        return 0

    def _is_http_error(self) -> bool:
        return self._status is not None and self._status >= 400


class JsonBodyReader(_CappedBody):
    """A single JSON object (non-streamed replies, embeddings, tags, errors before the stream)."""

    complete_without_end_marker = False

    def __init__(self, sink: ObjectSink, status: int | None, endpoint: Endpoint | None) -> None:
        super().__init__(sink, status, MAX_JSON_BODY_BYTES)
        self._endpoint = endpoint
        self._parsed = False

    def flush(self, at: float) -> None:
        if not self._body:
            return
        body = bytes(self._body)
        try:
            obj = json.loads(body)
        except (ValueError, UnicodeDecodeError, RecursionError):  # RecursionError: absurdly deep nesting
            obj = None
        sink, content = self._sink, self._sink.content
        if isinstance(obj, dict):
            sink.chunks = 1
            is_openai = (self._endpoint is not None and self._endpoint.api != API_OLLAMA) or (
                "choices" in obj or "object" in obj
            )
            apply = content.apply_openai if is_openai else content.apply_native
            if apply(obj):
                sink.gaps.add(at)
            self._parsed = True
        elif self._is_http_error():
            content.error = body.decode("utf-8", "replace").strip()
        elif not self._truncated:  # a cut body is already flagged truncated_body
            sink.add_flags([FLAG_UNPARSABLE_LINE])

    def ended(self) -> bool:
        return self._parsed or self._is_http_error()


class TextBodyReader(_CappedBody):
    """Anything else (``GET /`` says ``Ollama is running``): kept as text, or as the error of an HTTP error."""

    complete_without_end_marker = True

    def flush(self, at: float) -> None:
        if not self._body:
            return
        text = bytes(self._body).decode("utf-8", "replace")
        if self._is_http_error():
            self._sink.content.error = text.strip() or None
        else:
            self._sink.content.text.append(text)

    def ended(self) -> bool:
        return False


class SniffReader:
    """Mid-response capture (no headers): wait for a whole line after the cut one, then read NDJSON or SSE.

    Linear in the input: each fragment is scanned once, and only a short look-ahead after the first newline
    is kept for the decision.
    """

    streaming = True
    complete_without_end_marker = False

    def __init__(self, sink: ObjectSink) -> None:
        self._sink = sink
        self._pending: list[tuple[bytes, float]] = []
        self._pending_size = 0
        self._lookahead: bytearray | None = None  # what follows the first newline, once seen
        self._reader: NdjsonReader | SseReader | None = None
        sink.first_unit_may_be_partial = True

    def feed(self, data: bytes, at: float) -> None:
        if self._reader is not None:
            self._reader.feed(data, at)
            return
        self._pending.append((data, at))
        self._pending_size += len(data)
        if self._lookahead is None:
            newline = data.find(b"\n")
            if newline < 0:
                if self._pending_size > MAX_LINE_BYTES:
                    self._pending.clear()
                    self._pending_size = 0
                return
            self._lookahead = bytearray()
            data = data[newline + 1 :]
        ahead = self._lookahead
        if len(ahead) < _SNIFF_LOOKAHEAD:
            ahead += (data if ahead else data.lstrip(b"\r\n"))[: _SNIFF_LOOKAHEAD - len(ahead)]
        if len(ahead) < _SNIFF_MIN_NEXT_LINE and b"\n" not in ahead and self._pending_size < _SNIFF_MAX_WAIT_BYTES:
            return  # not enough of the next line yet to tell "data:" from "{"
        self._hand_over(is_sse=bytes(ahead).startswith((b"data:", b"event:", b"id:", b":")))

    def flush(self, at: float) -> None:
        if self._reader is None and self._pending:
            # Never saw a second line: decide on what we have, so a short tail is not lost.
            self._hand_over(is_sse=b"data:" in b"".join(d for d, _ in self._pending))
        if self._reader is not None:
            self._reader.flush(at)

    def ended(self) -> bool:
        return self._reader.ended() if self._reader is not None else self._sink.content.done

    def oversized(self) -> int:
        return self._reader.oversized() if self._reader is not None else 0

    def _hand_over(self, *, is_sse: bool) -> None:
        reader: NdjsonReader | SseReader = SseReader(self._sink) if is_sse else NdjsonReader(self._sink)
        self._reader = reader
        pending, self._pending, self._pending_size = self._pending, [], 0
        for fragment, when in pending:
            reader.feed(fragment, when)


def reader_for(mode: str, sink: ObjectSink, *, status: int | None, endpoint: Endpoint | None) -> BodyReader:
    """The reader for a body of ``mode`` (see :func:`body_mode`); text is kept up to the text cap."""
    if mode == MODE_NDJSON:
        return NdjsonReader(sink)
    if mode == MODE_SSE:
        return SseReader(sink)
    if mode == MODE_JSON:
        return JsonBodyReader(sink, status, endpoint)
    return TextBodyReader(sink, status, sink.content.max_text_chars)
