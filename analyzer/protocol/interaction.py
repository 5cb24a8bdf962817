"""Turn one HTTP exchange with Ollama, fed piece by piece with arrival times, into an InteractionRecord.

The same builder serves the mitmproxy addon (fed from hooks and the stream callable) and the pcap
analyzer (fed from reassembled TCP segments). Times are POSIX seconds (float). Body bytes are the
de-chunked HTTP body in any fragmentation; the builder never assumes a fragment is a whole line.
"""

from __future__ import annotations

import uuid
import zlib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from analyzer.protocol.body_readers import (
    BodyReader,
    ObjectSink,
    SniffReader,
    body_mode,
    reader_for,
)
from analyzer.protocol.endpoints import API_OLLAMA, KIND_LOAD, KIND_UNLOAD, Endpoint, classify
from analyzer.protocol.record import (
    FLAG_CAPTURE_ENDED_MID_REQUEST,
    FLAG_CAPTURE_ENDED_MID_RESPONSE,
    FLAG_CAPTURE_STARTED_MID_REQUEST,
    FLAG_CAPTURE_STARTED_MID_RESPONSE,
    FLAG_CLIENT_ABORTED,
    FLAG_ENCODED_BODY,
    FLAG_ERROR_MID_STREAM,
    FLAG_GAP_IN_CAPTURE,
    FLAG_NO_RESPONSE,
    FLAG_REMOTE_MODEL,
    FLAG_SHUTDOWN,
    FLAG_TRUNCATED_BODY,
    FLAG_UPSTREAM_FAILED,
    InteractionRecord,
)
from analyzer.protocol.redact import REDACT_IMAGES, redact
from analyzer.protocol.request_content import RequestContent, parse_request
from analyzer.protocol.request_decoding import ZstdBody
from analyzer.protocol.response_content import ResponseContent, is_cloud_model_name
from analyzer.protocol.timing import GapStats, ms_between
from analyzer.protocol.token_kinds import TOKEN_CONTENT, TOKEN_THINKING, TOKEN_TOOL

DEFAULT_MAX_TEXT_CHARS = 4 * 1024 * 1024
DEFAULT_MAX_REQUEST_BYTES = 32 * 1024 * 1024
# Messages and tool calls nested deeper than this (no real client does) are left out and flagged
# truncated_body, so every later step — redaction, the record's JSON, the log readers — can walk them.
MAX_NESTING = 100
# A compressed response fragment is inflated and read this much at a time, so memory stays bounded.
INFLATE_STEP_BYTES = 1024 * 1024

# Flags after which a response cannot be called complete, whatever it contained.
_INCOMPLETE_FLAGS = frozenset(
    {FLAG_CLIENT_ABORTED, FLAG_UPSTREAM_FAILED, FLAG_CAPTURE_ENDED_MID_RESPONSE, FLAG_SHUTDOWN, FLAG_NO_RESPONSE}
)


# Flags after which the request body kept may not be the one sent (a capture that missed part of it).
_PARTIAL_REQUEST = frozenset({FLAG_CAPTURE_STARTED_MID_REQUEST, FLAG_CAPTURE_ENDED_MID_REQUEST, FLAG_GAP_IN_CAPTURE})

_FIRST_TS, _LAST_TS = -62135596800.0, 253402300799.0  # 0001-01-01 and 9999-12-31T23:59:59 UTC


def iso_utc(ts: float) -> str:
    """POSIX seconds as ISO-8601 UTC with microseconds and a ``Z``.

    A time outside what a datetime can hold (a damaged capture's timestamp) is clamped to that range.
    """
    if not _FIRST_TS <= ts <= _LAST_TS:
        ts = _FIRST_TS if ts < 0 else _LAST_TS  # NaN lands on the last second too
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def nested_deeper_than(value: Any, limit: int) -> bool:
    """Whether lists and dicts in ``value`` nest more than ``limit`` levels (iterative: safe at any depth)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Iterable[Any] = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children)
    return False


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

    def pieces(self, data: bytes, step: int) -> Iterator[bytes]:
        """All the inflated bytes of ``data``, at most ``step`` at a time (a small input may inflate 1000-fold)."""
        pending = data
        while not self.failed:
            try:
                out = self._inflater.decompress(pending, step)
            except zlib.error:
                self.failed = True
                return
            if out:
                yield out
            pending = self._inflater.unconsumed_tail
            if not out or (len(out) < step and not pending):
                return

    def decode(self, data: bytes, limit: int = 0) -> bytes:
        """The inflated bytes of ``data``; with ``limit`` > 0 at most that many (the rest of ``data`` is dropped)."""
        if self.failed:
            return b""
        try:
            return self._inflater.decompress(data, limit)
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
    returns a record. Methods never raise on bad traffic: problems become ``flags``. How the response body
    is read (NDJSON, SSE, one JSON object, text, or sniffed after a cut) is the job of one
    :mod:`~analyzer.protocol.body_readers` reader, chosen when the response headers arrive.
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
        self._request_decoder: _Decoder | None = None
        self._request_zstd: ZstdBody | None = None  # zstd: kept compressed, decoded (bounded) when read
        self._request_unusable = False  # cut at the cap or not decodable: what is kept is not what was sent
        self._request_content_type: str | None = None
        self._request_content_encoding: str | None = None
        # response
        self.status: int | None = None
        self._response_at: float | None = None
        self._last_byte_at: float | None = None
        self._response_bytes = 0
        self._decoder: _Decoder | None = None
        self._body_unreadable = False  # an encoding we cannot undo: bytes are counted, not read
        self._reader: BodyReader | None = None
        self._content = ResponseContent(max_text_chars=max_text_chars)
        self._gaps = GapStats()  # arrival times of token-bearing objects
        self._sink = ObjectSink(self._content, self._gaps, self.add_flags)
        self._finished: InteractionRecord | None = None

    # -- feeding ------------------------------------------------------------------------------
    def request_started(self, at: float, method: str, path: str, headers: Mapping[str, str] | None) -> None:
        """The request line and headers; ``at`` is the time of the first request byte.

        A gzip/deflate/zstd ``Content-Encoding`` request body (clients send zstd to ``/v1/*``) is decoded before it
        is parsed; any other encoding is flagged ``encoded_body`` (the prompt cannot be read).
        """
        self.started_at = at
        self.method = method
        self.path = path
        self.endpoint = classify(path)
        self._request_content_type = _header(headers, "content-type")
        encoding = (_header(headers, "content-encoding") or "").strip().lower()
        self._request_content_encoding = encoding or None
        if encoding in ("gzip", "deflate"):
            self._request_decoder = _Decoder(encoding)
        elif encoding == "zstd":
            self._request_zstd = ZstdBody(self._max_request)
        elif encoding and encoding != "identity":
            self.add_flags([FLAG_ENCODED_BODY])
            self._request_unusable = True

    def request_body(self, data: bytes, at: float) -> None:
        """A fragment of the (de-chunked) request body."""
        self._request_bytes += len(data)
        if self._request_zstd is not None:
            self._request_zstd.feed(data)
            return
        room = self._max_request - len(self._request_body)
        if self._request_decoder is not None and room > 0:
            # one byte past the cap at most: a small compressed body must not inflate into gigabytes here
            data = self._request_decoder.decode(data, limit=room + 1)
            if self._request_decoder.failed:
                self.add_flags([FLAG_ENCODED_BODY])
                self._request_unusable = True
        if len(data) > room:
            self.add_flags([FLAG_TRUNCATED_BODY])
            self._request_unusable = True
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
            self._reader = SniffReader(self._sink)
            return
        encoding = (_header(headers, "content-encoding") or "").strip().lower()
        if encoding in ("gzip", "deflate"):
            self._decoder = _Decoder(encoding)
        elif encoding and encoding != "identity":
            self._body_unreadable = True
            self.add_flags([FLAG_ENCODED_BODY])
        mode = body_mode(_header(headers, "content-type"))
        self._reader = reader_for(mode, self._sink, status=status, endpoint=self.endpoint)

    def response_body(self, data: bytes, at: float) -> None:
        """A fragment of the de-chunked response body, as it arrived at ``at``."""
        if not data:
            return
        if self._reader is None:  # body without a status line: treat as captured mid-response
            self.response_started(at, None, None, mid_response=True)
        assert self._reader is not None
        self._response_bytes += len(data)
        self._last_byte_at = at
        if self._body_unreadable:
            return
        if self._decoder is None:
            self._reader.feed(data, at)
            return
        for piece in self._decoder.pieces(data, INFLATE_STEP_BYTES):
            self._reader.feed(piece, at)
        if self._decoder.failed:
            self._body_unreadable = True
            self.add_flags([FLAG_ENCODED_BODY])

    def add_flags(self, flags: Iterable[str]) -> None:
        """Attach flags found by the producer (e.g. gap_in_capture, client_aborted)."""
        for flag in flags:
            self._flags[flag] = None

    @property
    def chunks(self) -> int:
        """Response objects read so far (stream lines/events, or 1 for a parsed single body)."""
        return self._sink.chunks

    # -- finishing ----------------------------------------------------------------------------
    def finish(self, at: float | None = None, *, error: str | None = None) -> InteractionRecord:
        """Close the exchange (``at`` = time of the last response byte or of the abort) and build the record."""
        if self._finished is not None:
            return self._finished
        reader = self._reader
        if reader is not None:
            reader.flush(self._last_byte_at or 0.0)
        content, sink, gaps = self._content, self._sink, self._gaps
        request = self.request_so_far()
        endpoint = self.endpoint
        if endpoint is None and content.detected_kind:
            endpoint = Endpoint(content.detected_api or API_OLLAMA, content.detected_kind)
        kind = endpoint.kind if endpoint else ""
        if request.management_kind is not None:
            kind = request.management_kind
        elif (
            not self._request_bytes and kind in ("generate", "chat") and content.done_reason in (KIND_LOAD, KIND_UNLOAD)
        ):
            kind = content.done_reason  # the request was not seen (a capture), but the reply says what it was
        model = request.model or content.model
        remote = self._remote(model, content)
        if remote:
            self.add_flags([FLAG_REMOTE_MODEL])

        streaming = reader is not None and reader.streaming
        if error and not content.error:
            content.error = error
        if self.status is not None and self.status >= 400 and not content.error:
            content.error = f"HTTP {self.status}"
        if sink.had_error_line and streaming:
            self.add_flags([FLAG_ERROR_MID_STREAM])
        if content.truncated or (reader is not None and reader.oversized() > 0):
            self.add_flags([FLAG_TRUNCATED_BODY])

        started = self.started_at if self.started_at is not None else self._response_at
        end = at if at is not None else self._last_byte_at
        complete = self._settle_completeness()  # before the flags are listed: it may drop some
        stream = request.stream
        if stream is None:  # no request body said (GET, or a capture that missed it): tell by the response
            stream = streaming
        if nested_deeper_than(request.messages, MAX_NESTING):  # only hostile bodies nest this deep
            request.messages = None
            self.add_flags([FLAG_TRUNCATED_BODY])
        if nested_deeper_than(content.tool_calls, MAX_NESTING):
            content.tool_calls.clear()
            self.add_flags([FLAG_TRUNCATED_BODY])
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
            kind=kind,
            model=valid_unicode(model),
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
            ttft_ms=ms_between(started, gaps.first_at),
            total_ms=ms_between(started, end),
            gen_ms=ms_between(gaps.first_at, gaps.last_at),
            chunks=sink.chunks,
            wire_tokens_per_s=gaps.rate_per_s(),
            gap_p50_ms=gaps.percentile_ms(50),
            gap_p95_ms=gaps.percentile_ms(95),
            gap_max_ms=gaps.max_ms(),
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
            prompt_eval_cached_count=content.counters.get("prompt_eval_cached_count"),
            remote=remote,
            remote_model=valid_unicode(content.remote_model),
            remote_host=valid_unicode(content.remote_host),
            request_body=self._request_text(),
            request_content_type=valid_unicode(self._request_content_type),
            request_content_encoding=valid_unicode(self._request_content_encoding),
        )
        for name, value in (*self._token_timings(started, streaming).items(), *request.options.columns().items()):
            setattr(record, name, valid_unicode(value))
        self._finished = redact(record, self._redaction)
        return self._finished

    def _token_timings(self, started: float | None, streaming: bool) -> dict[str, float | None]:
        """The first token split by kind; ``thinking_ms`` runs from the first thinking token to the first token
        that is not thinking (answer or tool call) and needs a stream (a single body arrives all at once)."""
        first = self._sink.first_at
        thinking, answer = first.get(TOKEN_THINKING), first.get(TOKEN_CONTENT)
        tool = first.get(TOKEN_TOOL)
        after = min((t for t in (answer, tool) if t is not None), default=None)
        return {
            "ttft_thinking_ms": ms_between(started, thinking),
            "ttft_content_ms": ms_between(started, answer),
            "thinking_ms": ms_between(thinking, after) if streaming else None,
            "ttft_tool_ms": ms_between(started, tool),
        }

    def _remote(self, model: str | None, content: ResponseContent) -> bool | None:
        """True when a remote (cloud) model answered: the reply names one, or the model name asks for the cloud;
        False when a native reply finished without naming one; None when unknown."""
        if content.remote_model or content.remote_host or is_cloud_model_name(model):
            return True
        if content.done and content.detected_api == API_OLLAMA and content.detected_kind in ("generate", "chat"):
            return False
        return None

    def _request_text(self) -> str | None:
        """The request body (after content decoding) as text, for replay; None when it is not all there or
        not UTF-8 (a cut body, an encoding we cannot undo), so that a replay never sends something else."""
        body, problems = self._decoded_request()
        if not body or problems or self._request_unusable or not self._flags.keys().isdisjoint(_PARTIAL_REQUEST):
            return None
        try:
            return body.decode("utf-8")
        except UnicodeDecodeError:
            return None

    def _decoded_request(self) -> tuple[bytes, list[str]]:
        """The request body after content decoding, and the flags decoding it raised."""
        if self._request_zstd is not None:
            return self._request_zstd.decoded()
        return bytes(self._request_body), []

    def _protocol_ended(self) -> bool:
        """The body said it was finished: ``done:true``, ``data: [DONE]``, or a whole JSON body."""
        if self._response_at is None or self._reader is None or self._sink.had_error_line:
            return False
        return self._reader.ended()

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
        if self.method == "HEAD":  # a HEAD response has headers only: the status line was all of it
            return True
        reader = self._reader
        return reader is not None and reader.complete_without_end_marker and not self._sink.had_error_line

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
            chunks=self._sink.chunks,
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
        body, problems = self._decoded_request()
        self.add_flags(problems)
        return parse_request(self.endpoint, body, self._request_content_type) or RequestContent()

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
