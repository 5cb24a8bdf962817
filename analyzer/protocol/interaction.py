"""Turn one HTTP exchange with Ollama, fed piece by piece with arrival times, into an InteractionRecord.

The same builder serves the mitmproxy addon (fed from hooks and the stream callable) and the pcap
analyzer (fed from reassembled TCP segments). Times are POSIX seconds (float). Body bytes are the
de-chunked HTTP body in any fragmentation; the builder never assumes a fragment is a whole line.
"""

from __future__ import annotations

import json
import uuid
import zlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from analyzer.protocol.endpoints import API_OLLAMA, Endpoint, classify
from analyzer.protocol.framing import LineSplitter, SseSplitter
from analyzer.protocol.record import (
    FLAG_CAPTURE_STARTED_MID_RESPONSE,
    FLAG_CLIENT_ABORTED,
    FLAG_ENCODED_BODY,
    FLAG_ERROR_MID_STREAM,
    FLAG_TRUNCATED_BODY,
    FLAG_UNPARSABLE_LINE,
    InteractionRecord,
)
from analyzer.protocol.redact import REDACT_IMAGES, redact
from analyzer.protocol.request_content import RequestContent, parse_request
from analyzer.protocol.response_content import ResponseContent
from analyzer.protocol.timing import GapStats, ms_between

DEFAULT_MAX_TEXT_CHARS = 4 * 1024 * 1024
DEFAULT_MAX_REQUEST_BYTES = 32 * 1024 * 1024
# One stream line / SSE event, and one non-streamed JSON body (embeddings can be several MB): longer ones
# are dropped and flagged truncated_body. Independent of the text cap, which bounds what is *kept*.
MAX_LINE_BYTES = 8 * 1024 * 1024
MAX_JSON_BODY_BYTES = 32 * 1024 * 1024

# Flags after which a response cannot be called complete, whatever it contained.
_INCOMPLETE_FLAGS = frozenset(
    {FLAG_CLIENT_ABORTED, "upstream_failed", "capture_ended_mid_response", "proxy_shutdown", "no_response"}
)

MODE_NDJSON = "ndjson"
MODE_SSE = "sse"
MODE_JSON = "json"
MODE_TEXT = "text"
MODE_SNIFF = "sniff"


def iso_utc(ts: float) -> str:
    """POSIX seconds as ISO-8601 UTC with microseconds and a ``Z``."""
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def valid_unicode(value: Any) -> Any:
    """``value`` with lone UTF-16 surrogates (JSON allows ``"\\ud800"``) replaced by U+FFFD, recursively.

    A record must be writable as UTF-8 whatever a client sent; valid surrogate pairs become their character.
    """
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return value.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
        return value
    if isinstance(value, list):
        return [valid_unicode(item) for item in value]
    if isinstance(value, dict):
        return {valid_unicode(k): valid_unicode(v) for k, v in value.items()}
    return value


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


def _header(headers: Mapping[str, str] | None, name: str) -> str | None:
    if not headers:
        return None
    for key, value in headers.items():
        if key.lower() == name:
            return value
    return None


class _Decoder:
    """Undo gzip/deflate content-encoding incrementally; other encodings are left alone."""

    def __init__(self, encoding: str) -> None:
        wbits = 16 + zlib.MAX_WBITS if encoding == "gzip" else zlib.MAX_WBITS
        self._inflater = zlib.decompressobj(wbits)
        self.failed = False

    def decode(self, data: bytes) -> bytes:
        if self.failed:
            return b""
        try:
            return self._inflater.decompress(data)
        except zlib.error:
            self.failed = True
            return b""


@dataclass(frozen=True, slots=True)
class InFlight:
    """A read-only snapshot of an exchange still running (for live observers; see ``InteractionBuilder.in_flight``).

    Times are POSIX seconds; ``tokens`` counts token-bearing stream objects so far; ``layers`` maps a pull's
    layer digest to ``(completed, total)`` bytes.
    """

    started_at: float | None
    response_at: float | None
    first_token_at: float | None
    last_token_at: float | None
    status: int | None
    chunks: int
    tokens: int
    wire_tokens_per_s: float | None
    request_bytes: int
    response_bytes: int
    progress_status: str | None
    layers: dict[str, tuple[int, int]]
    done_reason: str | None
    error: str | None


class InteractionBuilder:
    """Incrementally builds one :class:`InteractionRecord`.

    Call order: ``request_started`` → ``request_body``* → ``response_started`` → ``response_body``* →
    ``finish``. Any step may be missing (a capture window cuts an exchange); ``finish`` always
    returns a record. Methods never raise on bad traffic: problems become ``flags``.
    """

    def __init__(
        self,
        *,
        source: str,
        client: str = "",
        server: str = "",
        record_id: str = "",
        max_text_chars: int = DEFAULT_MAX_TEXT_CHARS,
        max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES,
        redaction: str = REDACT_IMAGES,
    ) -> None:
        self.source = source
        self.client = client
        self.server = server
        self.record_id = record_id or uuid.uuid4().hex
        self._max_text = max_text_chars
        self._max_request = max_request_bytes
        self._redaction = redaction
        self._flags: dict[str, None] = {}
        # request
        self.started_at: float | None = None
        self.method = ""
        self.path = ""
        self.endpoint: Endpoint | None = None
        self._request_body = bytearray()
        self._request_bytes = 0
        # response
        self.status: int | None = None
        self._response_at: float | None = None
        self._last_byte_at: float | None = None
        self._response_bytes = 0
        self._mode: str | None = None
        self._decoder: _Decoder | None = None
        self._lines: LineSplitter | None = None
        self._events: SseSplitter | None = None
        self._body = bytearray()  # single JSON / text bodies, capped
        self._sniffed: list[tuple[bytes, float]] = []
        self._sse_done = False
        self._content = ResponseContent(max_text_chars=max_text_chars)
        self._chunks = 0
        self._had_error_line = False
        self._json_parsed = False
        self._body_truncated = False
        # Mid-response capture: the first unit may be the tail of a line. It is kept when it parses as a
        # whole object (the capture started on a line boundary) and dropped quietly when it does not.
        self._first_unit_may_be_partial = False
        self._gaps = GapStats()
        self._finished: InteractionRecord | None = None

    # -- feeding ------------------------------------------------------------------------------
    def request_started(self, at: float, method: str, path: str, headers: Mapping[str, str]) -> None:
        """The request line and headers; ``at`` is the time of the first request byte."""
        self.started_at = at
        self.method = method
        self.path = path
        self.endpoint = classify(path)

    def request_body(self, data: bytes, at: float) -> None:
        """A fragment of the (de-chunked) request body."""
        self._request_bytes += len(data)
        room = self._max_request - len(self._request_body)
        if len(data) > room:
            self.add_flags([FLAG_TRUNCATED_BODY])
            data = data[: max(room, 0)]
        self._request_body += data

    def response_started(
        self,
        at: float,
        status: int | None,
        headers: Mapping[str, str] | None,
        *,
        mid_response: bool = False,
    ) -> None:
        """Status line and headers; ``at`` is the time of the first response byte.

        ``mid_response=True`` (pcap only): the capture began inside the response body, so
        ``status``/``headers`` are unknown (pass ``None``); the builder sniffs NDJSON vs SSE, keeps the
        first line only if it parses whole (the capture began on a line boundary) and drops it quietly
        otherwise.
        """
        self._response_at = at
        self._last_byte_at = at
        self.status = status
        if mid_response:
            self.add_flags([FLAG_CAPTURE_STARTED_MID_RESPONSE])
            self._mode = MODE_SNIFF
            self._first_unit_may_be_partial = True
            return
        encoding = (_header(headers, "content-encoding") or "").strip().lower()
        if encoding in ("gzip", "deflate"):
            self._decoder = _Decoder(encoding)
        elif encoding and encoding != "identity":
            self.add_flags([FLAG_ENCODED_BODY])
        self._set_mode(body_mode(_header(headers, "content-type")))

    def _set_mode(self, mode: str) -> None:
        self._mode = mode
        if mode == MODE_NDJSON:
            self._lines = LineSplitter(MAX_LINE_BYTES)
        elif mode == MODE_SSE:
            self._events = SseSplitter(MAX_LINE_BYTES)

    def response_body(self, data: bytes, at: float) -> None:
        """A fragment of the de-chunked response body, as it arrived at ``at``."""
        if not data:
            return
        if self._mode is None:  # body without a status line: treat as captured mid-response
            self.response_started(at, None, None, mid_response=True)
        self._response_bytes += len(data)
        self._last_byte_at = at
        if FLAG_ENCODED_BODY in self._flags:
            return
        if self._decoder is not None:
            data = self._decoder.decode(data)
            if self._decoder.failed:
                self.add_flags([FLAG_ENCODED_BODY])
                return
        self._consume(data, at)

    def _consume(self, data: bytes, at: float) -> None:
        mode = self._mode
        if mode == MODE_NDJSON:
            assert self._lines is not None
            for line in self._lines.feed(data):
                self._take_ndjson(line, at)
        elif mode == MODE_SSE:
            assert self._events is not None
            for event in self._events.feed(data):
                self._take_sse(event, at)
        elif mode == MODE_SNIFF:
            self._sniff(data, at)
        else:
            cap = MAX_JSON_BODY_BYTES if mode == MODE_JSON else self._max_text
            room = cap - len(self._body)
            if len(data) > room:
                self._body_truncated = True
                self.add_flags([FLAG_TRUNCATED_BODY])
                data = data[: max(room, 0)]
            self._body += data

    def _sniff(self, data: bytes, at: float) -> None:
        """Mid-response capture: wait for a whole line after the cut one, then pick NDJSON or SSE."""
        self._sniffed.append((data, at))
        joined = b"".join(d for d, _ in self._sniffed)
        first_newline = joined.find(b"\n")
        if first_newline < 0:
            if len(joined) > MAX_LINE_BYTES:
                self._sniffed.clear()
            return
        rest = joined[first_newline + 1 :].lstrip(b"\r\n")
        if len(rest) < 6 and b"\n" not in rest and len(joined) < 64 * 1024:
            return  # not enough of the next line yet to tell "data:" from "{"
        is_sse = rest.startswith((b"data:", b"event:", b"id:", b":"))
        self._set_mode(MODE_SSE if is_sse else MODE_NDJSON)
        pending, self._sniffed = self._sniffed, []
        for fragment, when in pending:
            self._consume(fragment, when)

    def _take_ndjson(self, line: bytes, at: float) -> None:
        line = line.strip()
        if line:
            self._take_object(line, at, self._content.apply_native)

    def _take_sse(self, event: bytes, at: float) -> None:
        payload = event.strip()
        if payload == b"[DONE]":
            self._sse_done = True
        else:
            self._take_object(payload, at, self._content.apply_openai)

    def _take_object(self, raw: bytes, at: float, apply: Callable[[dict[str, Any]], bool]) -> None:
        """One stream object (NDJSON line or SSE data), applied; a token-bearing one is timed at ``at``."""
        first_may_be_partial, self._first_unit_may_be_partial = self._first_unit_may_be_partial, False
        try:
            obj = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            obj = None
        if not isinstance(obj, dict):
            if not first_may_be_partial:
                self.add_flags([FLAG_UNPARSABLE_LINE])
            return
        self._chunks += 1
        if obj.get("error") is not None:
            self._had_error_line = True
        if apply(obj):
            self._gaps.add(at)

    def add_flags(self, flags: Iterable[str]) -> None:
        """Attach flags found by the producer (e.g. gap_in_capture, client_aborted)."""
        for flag in flags:
            self._flags[flag] = None

    # -- finishing ----------------------------------------------------------------------------
    def finish(self, at: float | None = None, *, error: str | None = None) -> InteractionRecord:
        """Close the exchange (``at`` = time of the last response byte or of the abort) and build the record."""
        if self._finished is not None:
            return self._finished
        self._flush_body()
        content = self._content
        request = parse_request(self.endpoint, bytes(self._request_body)) or RequestContent()
        endpoint = self.endpoint
        if endpoint is None and content.detected_kind:
            endpoint = Endpoint(content.detected_api or API_OLLAMA, content.detected_kind)

        if error and not content.error:
            content.error = error
        if self.status is not None and self.status >= 400 and not content.error:
            content.error = f"HTTP {self.status}"
        if self._had_error_line and self._mode in (MODE_NDJSON, MODE_SSE, MODE_SNIFF):
            self.add_flags([FLAG_ERROR_MID_STREAM])
        if content.truncated or self._oversized():
            self.add_flags([FLAG_TRUNCATED_BODY])

        started = self.started_at if self.started_at is not None else self._response_at
        end = at if at is not None else self._last_byte_at
        complete = self._settle_completeness()  # before the flags are listed: it may drop some
        stream = request.stream
        if stream is None:  # no request body said (GET, or a capture that missed it): tell by the response
            stream = self._mode in (MODE_NDJSON, MODE_SSE, MODE_SNIFF)
        response_text = "".join(content.text)
        if not response_text and content.progress_status is not None:
            response_text = content.progress_status

        record = InteractionRecord(
            id=self.record_id,
            source=self.source,
            started_at=iso_utc(started) if started is not None else "",
            client=self.client,
            server=self.server,
            method=self.method,
            path=self.path,
            status=self.status,
            api=endpoint.api if endpoint else "",
            kind=endpoint.kind if endpoint else "",
            model=valid_unicode(request.model or content.model),
            stream=stream,
            prompt=valid_unicode(request.prompt),
            system=valid_unicode(request.system),
            messages=valid_unicode(request.messages),
            response_text=valid_unicode(response_text),
            thinking_text=valid_unicode("".join(content.thinking)),
            tool_calls=valid_unicode(list(content.tool_calls)),
            done_reason=valid_unicode(content.done_reason),
            error=valid_unicode(content.error),
            complete=complete,
            flags=list(self._flags),
            ttfb_ms=ms_between(started, self._response_at),
            ttft_ms=ms_between(started, self._gaps.first_at),
            total_ms=ms_between(started, end),
            gen_ms=ms_between(self._gaps.first_at, self._gaps.last_at),
            chunks=self._chunks,
            wire_tokens_per_s=self._gaps.rate_per_s(),
            gap_p50_ms=self._gaps.percentile_ms(50),
            gap_p95_ms=self._gaps.percentile_ms(95),
            gap_max_ms=self._gaps.max_ms(),
            prompt_eval_count=content.counters.get("prompt_eval_count"),
            eval_count=content.counters.get("eval_count"),
            total_duration_ms=content.counter_ms("total_duration"),
            load_duration_ms=content.counter_ms("load_duration"),
            prompt_eval_duration_ms=content.counter_ms("prompt_eval_duration"),
            eval_duration_ms=content.counter_ms("eval_duration"),
            eval_tokens_per_s=content.tokens_per_s("eval_count", "eval_duration"),
            prompt_tokens_per_s=content.tokens_per_s("prompt_eval_count", "prompt_eval_duration"),
            request_bytes=self._request_bytes,
            response_bytes=self._response_bytes,
        )
        self._finished = redact(record, self._redaction)
        return self._finished

    def _oversized(self) -> bool:
        splitter_oversized = self._lines.oversized if self._lines else 0
        if self._events is not None:
            splitter_oversized += self._events.oversized_total
        return splitter_oversized > 0

    def _flush_body(self) -> None:
        """End of body: parse what is left (an unterminated last line, a single JSON/text body)."""
        if self._mode == MODE_SNIFF and self._sniffed:
            # Never saw a second line: decide on what we have, so a short tail is not lost.
            pending, self._sniffed = self._sniffed, []
            joined = b"".join(d for d, _ in pending)
            is_sse = b"data:" in joined
            self._set_mode(MODE_SSE if is_sse else MODE_NDJSON)
            for fragment, when in pending:
                self._consume(fragment, when)
        when = self._last_byte_at or 0.0
        if self._lines is not None:
            rest = self._lines.flush()
            if rest is not None and rest.strip():
                self._take_ndjson(rest, when)
        if self._events is not None:
            for event in self._events.flush():
                self._take_sse(event, when)
        if self._mode in (MODE_JSON, MODE_TEXT) and self._body:
            self._take_single_body(bytes(self._body))

    def _take_single_body(self, body: bytes) -> None:
        content = self._content
        if self._mode == MODE_JSON:
            try:
                obj = json.loads(body)
            except (ValueError, UnicodeDecodeError):
                obj = None
            if isinstance(obj, dict):
                self._chunks = 1
                is_openai = (self.endpoint is not None and self.endpoint.api != API_OLLAMA) or (
                    "choices" in obj or "object" in obj
                )
                apply = content.apply_openai if is_openai else content.apply_native
                if apply(obj):
                    self._gaps.add(self._last_byte_at or 0.0)
                self._json_parsed = True
                return
            if self.status is not None and self.status >= 400:
                content.error = body.decode("utf-8", "replace").strip()
            elif not self._body_truncated:  # a cut body is already flagged truncated_body
                self.add_flags([FLAG_UNPARSABLE_LINE])
            return
        text = body.decode("utf-8", "replace")
        if self.status is not None and self.status >= 400:
            content.error = text.strip() or None
        else:
            content.text.append(text)

    def _protocol_ended(self) -> bool:
        """The body said it was finished: ``done:true``, ``data: [DONE]``, or a whole JSON body."""
        if self._response_at is None or self._had_error_line:
            return False
        if self._mode == MODE_SSE:
            return self._sse_done
        if self._mode in (MODE_NDJSON, MODE_SNIFF):
            return self._content.done
        if self._mode == MODE_JSON:
            return self._json_parsed or (self.status is not None and self.status >= 400)
        return False

    def _settle_completeness(self) -> bool:
        """Whether the response is complete. Once the body said it was finished, a client that hung up
        before the last empty chunk (the openai client does, right after [DONE]) received everything: the
        transport-level abort/failure flags are dropped rather than reported."""
        if self._protocol_ended():
            for flag in _INCOMPLETE_FLAGS:
                self._flags.pop(flag, None)
            return True
        if any(flag in self._flags for flag in _INCOMPLETE_FLAGS) or self._response_at is None:
            return False
        return self._mode == MODE_TEXT and not self._had_error_line

    # -- read-only view for live observers (additive: nothing above depends on it) ----------------
    @property
    def redaction(self) -> str:
        """The redaction mode the finished record gets (a live view of the prompt must honour it too)."""
        return self._redaction

    def in_flight(self) -> InFlight:
        """What is known so far, cheaply (O(layers)); safe to call between any two feeding calls."""
        content = self._content
        return InFlight(
            started_at=self.started_at,
            response_at=self._response_at,
            first_token_at=self._gaps.first_at,
            last_token_at=self._gaps.last_at,
            status=self.status,
            chunks=self._chunks,
            tokens=self._gaps.count,
            wire_tokens_per_s=self._gaps.rate_per_s(),
            request_bytes=self._request_bytes,
            response_bytes=self._response_bytes,
            progress_status=content.progress_status,
            layers={digest: (done, total) for digest, (done, total) in content.layers.items()},
            done_reason=content.done_reason,
            error=content.error,
        )

    def request_edges(self, size: int) -> tuple[bytes, bytes]:
        """The first and the last ``size`` bytes of the request body (for a cheap look at a huge one)."""
        body = self._request_body
        return bytes(body[:size]), bytes(body[-size:])

    def request_so_far(self) -> RequestContent:
        """The request body read so far (model, prompt, messages); unredacted — apply ``redaction`` yourself."""
        return parse_request(self.endpoint, bytes(self._request_body)) or RequestContent()

    def response_tail(self, max_chars: int) -> str:
        """The last ``max_chars`` characters of the response text so far (O(max_chars), not O(text))."""
        pieces: list[str] = []
        size = 0
        for piece in reversed(self._content.text):
            pieces.append(piece)
            size += len(piece)
            if size >= max_chars:
                break
        return "".join(reversed(pieces))[-max_chars:] if max_chars > 0 else ""
