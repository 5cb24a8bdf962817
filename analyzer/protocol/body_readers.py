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

from analyzer.protocol.endpoints import API_ANTHROPIC, API_OLLAMA, Endpoint
from analyzer.protocol.framing import LineSplitter, SseSplitter
from analyzer.protocol.record import FLAG_TRUNCATED_BODY, FLAG_UNPARSABLE_LINE
from analyzer.protocol.response_content import ResponseContent
from analyzer.protocol.timing import GapStats
from analyzer.protocol.token_kinds import TOKEN_KINDS

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

Apply = Callable[[dict[str, Any]], int]  # the token kinds an object carried (token_kinds bits; 0: none)
# The per-line decoder: msgspec reads the bytes as they are (no str step) about 3x faster than json. Whatever it
# refuses (lone surrogates, NaN/Infinity, 1e400, bad UTF-8, trailing bytes, deep nesting) goes to json, which
# decides as before: where msgspec accepts a line, both give the same object, so records do not change.
_fast_decode = msgspec.json.Decoder().decode
_ANTHROPIC_EVENTS = frozenset(
    {
        "message_start",
        "content_block_start",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
        "ping",
    }
)


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
        self.first_at: dict[int, float] = {}  # token kind bit -> arrival of its first token
        self._kinds_seen = 0
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
        tokens = apply(obj)
        if obj.get("error") is not None or self.content.failed:
            self.had_error_line = True
        if tokens:  # note_tokens, inline: once per token-bearing chunk
            self.gaps.add(at)
            if tokens & ~self._kinds_seen:
                self._first_of_kinds(tokens, at)

    def note_tokens(self, tokens: int, at: float) -> None:
        """An object carrying ``tokens`` (token_kinds bits) arrived at ``at``: a token-bearing chunk."""
        self.gaps.add(at)
        if tokens & ~self._kinds_seen:  # the first token of a kind: rare, so the usual chunk costs one test
            self._first_of_kinds(tokens, at)

    def _first_of_kinds(self, tokens: int, at: float) -> None:
        self._kinds_seen |= tokens
        for kind in TOKEN_KINDS:
            if tokens & kind and kind not in self.first_at:
                self.first_at[kind] = at


def stream_apply(content: ResponseContent, endpoint: Endpoint | None) -> Apply:
    """How to read one SSE data object: by the endpoint's API, or by the object itself when it is unknown."""
    if endpoint is not None and endpoint.api == API_ANTHROPIC:
        return content.apply_anthropic
    if endpoint is not None and endpoint.kind == "responses":
        return content.apply_responses
    if endpoint is not None:
        return content.apply_openai

    def by_shape(obj: dict[str, Any]) -> int:
        kind = obj.get("type")
        if isinstance(kind, str) and "choices" not in obj:
            if kind.startswith("response.") or obj.get("object") == "response":
                return content.apply_responses(obj)
            if kind in _ANTHROPIC_EVENTS or kind in ("error", "message"):
                return content.apply_anthropic(obj)
        return content.apply_openai(obj)

    return by_shape


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
    """SSE streams: OpenAI-compatible ``data: <json>`` events ending with ``data: [DONE]``; Anthropic Messages and
    OpenAI Responses events (``event:`` + ``data:``, ending with ``message_stop`` / ``response.completed``)."""

    streaming = True
    complete_without_end_marker = False

    def __init__(self, sink: ObjectSink, endpoint: Endpoint | None = None) -> None:
        self._take_object = sink.take_stream_object
        self._apply = stream_apply(sink.content, endpoint)
        self._content = sink.content
        self._events = SseSplitter(MAX_LINE_BYTES)
        self._done = False

    def feed(self, data: bytes, at: float) -> None:
        for event in self._events.feed(data):
            self._take(event, at)

    def flush(self, at: float) -> None:
        for event in self._events.flush():
            self._take(event, at)

    def ended(self) -> bool:
        # [DONE] ends an OpenAI chat stream; Anthropic and Responses streams end with their final event
        return self._done or (self._content.done and self._content.detected_kind in ("messages", "responses"))

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
            endpoint = self._endpoint
            if endpoint is not None and endpoint.api != API_OLLAMA:
                apply = stream_apply(content, endpoint)
            elif endpoint is None and ("type" in obj or obj.get("object") == "response"):
                apply = stream_apply(content, None)
            elif "choices" in obj or "object" in obj:
                apply = content.apply_openai
            else:
                apply = content.apply_native
            tokens = apply(obj)
            if tokens:
                sink.note_tokens(tokens, at)
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
        reader: NdjsonReader | SseReader = SseReader(self._sink) if is_sse else NdjsonReader(self._sink)  # by shape
        self._reader = reader
        pending, self._pending, self._pending_size = self._pending, [], 0
        for fragment, when in pending:
            reader.feed(fragment, when)


def reader_for(mode: str, sink: ObjectSink, *, status: int | None, endpoint: Endpoint | None) -> BodyReader:
    """The reader for a body of ``mode`` (see :func:`body_mode`); text is kept up to the text cap."""
    if mode == MODE_NDJSON:
        return NdjsonReader(sink)
    if mode == MODE_SSE:
        return SseReader(sink, endpoint)
    if mode == MODE_JSON:
        return JsonBodyReader(sink, status, endpoint)
    return TextBodyReader(sink, status, sink.content.max_text_chars)
