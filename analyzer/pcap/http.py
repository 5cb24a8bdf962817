"""HTTP/1.1 exchanges from the two reassembled byte streams of one TCP connection.

:class:`HttpConnection` is a :class:`analyzer.pcap.tcp.StreamSink`: it parses requests from the
client stream and responses from the server stream (keep-alive, pipelining — responses match
requests in order), removes chunked framing, and drives one :class:`ExchangeBuilder` per exchange
with the capture time of each packet's bytes. Capture windows and holes are handled here: a stream
that starts inside a message resynchronises on the next request line, status line or chunk
boundary, and the record gets the matching ``capture_*`` / ``gap_in_capture`` flags.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from analyzer.pcap.http_framing import ChunkDecoder, ChunkError, content_length, is_chunked, parse_head
from analyzer.protocol.record import (
    FLAG_CAPTURE_ENDED_MID_REQUEST,
    FLAG_CAPTURE_ENDED_MID_RESPONSE,
    FLAG_CAPTURE_STARTED_MID_REQUEST,
    FLAG_CLIENT_ABORTED,
    FLAG_GAP_IN_CAPTURE,
    FLAG_NO_RESPONSE,
    FLAG_UPSTREAM_FAILED,
    format_address,
)

MAX_HEADER_BYTES = 64 * 1024
MAX_RESYNC_BYTES = 256 * 1024
# Parser steps allowed per input byte and per call (plus a constant). Every step consumes input or moves
# to a state that will, so a correct parser stays far below this; past it a connection is given up
# (counted in ``HttpStats.stalled_connections``) instead of spinning: termination never rests on the
# parser being right.
STEPS_PER_BYTE = 4
STEPS_PER_CALL = 8
STEPS_BASE = 64


class ExchangeBuilder(Protocol):
    """What the HTTP layer drives per exchange (implemented by ``InteractionBuilder``)."""

    def request_started(self, at: float, method: str, path: str, headers: Mapping[str, str]) -> None: ...

    def request_body(self, data: bytes, at: float) -> None: ...

    def response_started(
        self, at: float, status: int | None, headers: Mapping[str, str] | None, *, mid_response: bool = False
    ) -> None: ...

    def response_body(self, data: bytes, at: float) -> None: ...

    def add_flags(self, flags: Iterable[str]) -> None: ...

    def finish(self, at: float | None = None, *, error: str | None = None) -> Any: ...


BuilderFactory = Callable[[str, str], ExchangeBuilder]  # (client "ip:port", server "ip:port")


@dataclass
class HttpStats:
    """HTTP-level counters shared by all connections of a run."""

    http_connections: int = 0  # connections where at least one message was parsed
    non_http_connections: int = 0  # connections whose bytes are not HTTP/1.x (skipped)
    unparsed_connections: int = 0  # mid-capture connections where no message boundary was found
    exchanges: int = 0
    gap_flags: int = 0  # exchanges flagged gap_in_capture
    stalled_connections: int = 0  # connections given up because parsing stopped making progress


class _Exchange:
    __slots__ = ("builder", "finished", "method", "responded")

    def __init__(self, builder: ExchangeBuilder, method: str) -> None:
        self.builder = builder
        self.method = method
        self.finished = False
        self.responded = False


# States of each side's parser.
_HEAD, _BODY_LENGTH, _BODY_CHUNKED, _BODY_CLOSE, _RESYNC, _DEAD = range(6)

# Repetitions are bounded so that a search over garbage stays linear in its length.
_REQUEST_LINE = re.compile(
    rb"(?:GET|POST|PUT|DELETE|HEAD|OPTIONS|PATCH|TRACE|CONNECT) [^ \r\n]{1,8192} HTTP/1\.[01]\r\n"
)
_STATUS_LINE = re.compile(rb"HTTP/1\.[01] \d{3}[ \r]")
_CHUNK_ANCHOR = re.compile(rb"(?:\A|\r\n)[0-9a-fA-F]{1,8}(?:;[^\r\n]{0,256})?\r\n(?=\{|\[|data:|event:|id:|:)")
_LAST_CHUNK = re.compile(rb"\r\n0\r\n\r\n")
_HEADER_END = b"\r\n\r\n"


def _anchor_start(buf: bytearray, match: re.Match[bytes]) -> int:
    """Where a chunk-anchor match's size line begins (after its leading CRLF, if any)."""
    start = match.start()
    return start + 2 if buf[start : start + 2] == b"\r\n" else start


class HttpConnection:
    """Parses one TCP connection's HTTP/1.1 traffic; finished builder results go to ``on_result``."""

    def __init__(
        self,
        key: tuple[str, int, str, int],
        syn_seen: bool,
        builder_factory: BuilderFactory,
        on_result: Callable[[Any], None],
        stats: HttpStats | None = None,
    ) -> None:
        self.client = format_address(key[0], key[1])
        self.server = format_address(key[2], key[3])
        self.syn_seen = syn_seen
        self.builder_factory = builder_factory
        self.on_result = on_result
        self.stats = stats if stats is not None else HttpStats()
        self.exchanges_seen = 0
        self.non_http = False
        self.client_closed = False
        self.server_closed_first = False  # the server's FIN came before any FIN or RST of the client
        self.queue: deque[_Exchange] = deque()  # requests waiting for (the end of) their response
        # request side
        self.req_state = _HEAD
        self.req_started = False  # any client byte seen
        self.req_buf = bytearray()
        self.req_head_ts = 0.0
        self.req_remaining = 0
        self.req_chunks = ChunkDecoder()
        self.req_exchange: _Exchange | None = None
        # response side
        self.resp_state = _HEAD
        self.resp_started = False
        self.resp_buf = bytearray()
        self.resp_head_ts = 0.0
        self.resp_remaining = 0
        self.resp_chunks = ChunkDecoder()
        self.resp_exchange: _Exchange | None = None
        self.resp_last_ts: float | None = None
        self.resync_chunks = False  # response resync may land inside the current chunked body
        self.resync_ts = 0.0
        self.resync_min_start = 0  # after a chunk error: the parse point resync finds must be past 0
        # progress accounting (see STEPS_PER_BYTE)
        self.steps = 0
        self.bytes_in = 0
        self.calls = 0
        self.stalled = False  # given up: the rest of the connection is ignored

    # -- StreamSink -------------------------------------------------------------------------------

    def on_data(self, from_client: bool, ts: float, data: bytes) -> None:
        """Bytes of one direction, in order, as carried by the packet captured at ``ts``."""
        if self.non_http or self.stalled:
            return
        self.bytes_in += len(data)
        self.calls += 1
        if from_client:
            if not self.req_started:
                self.req_started = True
                if not self.syn_seen and not _REQUEST_LINE.match(data[:64]) and not data[:1].isupper():
                    self.req_state = _RESYNC
            self._request_data(ts, data)
        else:
            if not self.resp_started:
                self.resp_started = True
                if not self.syn_seen and not data.startswith(b"HTTP/"[: len(data)]):
                    self._enter_response_resync(ts, chunks=True)
            self._response_data(ts, data)

    def on_gap(self, from_client: bool, ts: float, size: int) -> None:
        """``size`` bytes of one direction were never captured."""
        if self.non_http:
            return
        if from_client:
            self._request_gap(ts, size)
        else:
            self._response_gap(ts, size)

    def on_end(self, from_client: bool, ts: float) -> None:
        """A FIN was reached in one direction."""
        if self.non_http:
            return
        if from_client:
            self.client_closed = True
            return
        self.server_closed_first = not self.client_closed
        ex = self.resp_exchange
        if ex is not None:
            if self.resp_state == _BODY_CLOSE:
                self._finish_response(self.resp_last_ts or ts)
            else:
                # The server closed mid-body: because the client had gone (aborted), or on its own (failed).
                flag = FLAG_CLIENT_ABORTED if self.client_closed else FLAG_UPSTREAM_FAILED
                self._finish_incomplete(ex, self.resp_last_ts or ts, [flag])
        if self.server_closed_first:
            # Requests still waiting will never be answered, and the server hung up first: its failure,
            # whatever the client does next (it usually closes too, which must not read as an abort).
            self._finish_unanswered(ts, [FLAG_NO_RESPONSE, FLAG_UPSTREAM_FAILED])
        self.resp_state = _DEAD

    def on_close(self, ts: float, reason: str, reset_by_client: bool = False) -> None:
        """The connection is over (``fin``, ``rst`` or ``capture_end``): finish what is open."""
        if self.non_http:
            return
        capture_end = reason == "capture_end"
        # Blame the side that hung up first: a client FIN/RST after the server's FIN is only its answer.
        client_first = (reset_by_client or self.client_closed) and not self.server_closed_first
        ex = self.resp_exchange
        if ex is not None and not ex.finished:
            if capture_end:
                flags = [FLAG_CAPTURE_ENDED_MID_RESPONSE]
            elif self.resp_state == _BODY_CLOSE and not reset_by_client:
                flags = []
            elif client_first:
                flags = [FLAG_CLIENT_ABORTED]
            else:
                flags = [FLAG_UPSTREAM_FAILED]
            self._finish_incomplete(ex, self.resp_last_ts or ts, flags)
        if capture_end:
            while self.queue:
                ex = self.queue.popleft()
                mid_request = ex is self.req_exchange and self.req_state in (_BODY_LENGTH, _BODY_CHUNKED)
                self._finish_incomplete(
                    ex, ts, [FLAG_CAPTURE_ENDED_MID_REQUEST if mid_request else FLAG_CAPTURE_ENDED_MID_RESPONSE]
                )
        else:
            # no_response plus who ended it, as the proxy records it (client_aborted or upstream_failed)
            self._finish_unanswered(
                ts, [FLAG_NO_RESPONSE, FLAG_CLIENT_ABORTED if client_first else FLAG_UPSTREAM_FAILED]
            )
        if not self.exchanges_seen and (self.req_started or self.resp_started):
            self.stats.unparsed_connections += 1
        self.req_buf = bytearray()
        self.resp_buf = bytearray()

    # -- helpers ----------------------------------------------------------------------------------

    def _declare_non_http(self) -> None:
        if self.exchanges_seen:
            self.req_state = self.resp_state = _DEAD
            return
        self.non_http = True
        self.stats.non_http_connections += 1
        self.req_buf = bytearray()
        self.resp_buf = bytearray()

    def _new_exchange(self, method: str) -> _Exchange:
        ex = _Exchange(self.builder_factory(self.client, self.server), method)
        self.exchanges_seen += 1
        if self.exchanges_seen == 1:
            self.stats.http_connections += 1
        return ex

    def _emit(self, ex: _Exchange, at: float | None) -> None:
        ex.finished = True
        if ex is self.resp_exchange:
            self.resp_exchange = None
        self.stats.exchanges += 1
        self.on_result(ex.builder.finish(at))

    def _finish_incomplete(self, ex: _Exchange, at: float | None, flags: list[str]) -> None:
        if ex.finished:
            return
        if flags:
            ex.builder.add_flags(flags)
        self._emit(ex, at)

    def _finish_unanswered(self, ts: float, flags: list[str]) -> None:
        """Finish every queued request that never got (the start of) a response."""
        while self.queue:
            ex = self.queue.popleft()
            self._finish_incomplete(ex, ts, flags)

    def _flag_gap(self, ex: _Exchange | None) -> None:
        if ex is not None and not ex.finished:
            ex.builder.add_flags([FLAG_GAP_IN_CAPTURE])
            self.stats.gap_flags += 1

    # -- requests ---------------------------------------------------------------------------------

    def _step(self) -> bool:
        """Count one parser step; False (and the connection given up) once the work bound is passed."""
        self.steps += 1
        if self.steps <= STEPS_PER_BYTE * self.bytes_in + STEPS_PER_CALL * self.calls + STEPS_BASE:
            return True
        if self.stalled:
            return False
        self.stalled = True
        self.stats.stalled_connections += 1
        self._flag_gap(self.req_exchange)
        self._flag_gap(self.resp_exchange)
        self.req_state = self.resp_state = _DEAD
        self.req_buf = bytearray()
        self.resp_buf = bytearray()
        return False

    def _request_data(self, ts: float, data: bytes) -> None:
        while data and self._step():
            state = self.req_state
            if state == _HEAD:
                if not self.req_buf:
                    data = data.lstrip(b"\r\n")
                    if not data:
                        return
                    if self.syn_seen and not self.exchanges_seen and not data[:1].isupper():
                        self._declare_non_http()
                        return
                    self.req_head_ts = ts
                buf = self.req_buf
                scan_from = max(len(buf) - 3, 0)
                buf += data
                end = buf.find(_HEADER_END, scan_from)
                if end < 0:
                    if len(buf) > MAX_HEADER_BYTES:
                        self._bad_request_head()
                    return
                head = bytes(buf[:end])
                data = bytes(buf[end + 4 :])
                self.req_buf = bytearray()
                if not self._start_request(head):
                    self._bad_request_head()
                    return
            elif state == _BODY_LENGTH:
                take = min(self.req_remaining, len(data))
                self._request_body(data[:take] if take < len(data) else data, ts)
                self.req_remaining -= take
                data = data[take:]
                if not self.req_remaining:
                    self._request_done()
            elif state == _BODY_CHUNKED:
                try:
                    body, used = self.req_chunks.feed(data)
                except ChunkError as exc:
                    if exc.body:
                        self._request_body(exc.body, ts)
                    self._flag_gap(self.req_exchange)
                    self._request_done()
                    self.req_state = _RESYNC
                    self.req_buf = bytearray()
                    data = data[exc.at :]
                    continue
                if body:
                    self._request_body(body, ts)
                data = data[used:]
                if self.req_chunks.state == ChunkDecoder.DONE:
                    self._request_done()
            elif state == _RESYNC:
                buf = self.req_buf
                scan_from = max(len(buf) - 80, 0)
                buf += data
                match = _REQUEST_LINE.search(buf, scan_from)
                if match is None:
                    if len(buf) > MAX_RESYNC_BYTES:
                        del buf[: len(buf) - 128]
                    return
                data = bytes(buf[match.start() :])
                self.req_buf = bytearray()
                self.req_state = _HEAD
            else:
                return

    def _bad_request_head(self) -> None:
        if self.syn_seen and not self.exchanges_seen:
            self._declare_non_http()
        else:
            self.req_state = _RESYNC
            self.req_buf = bytearray()

    def _start_request(self, head: bytes) -> bool:
        parsed = parse_head(head)
        if parsed is None:
            return False
        first, headers = parsed
        parts = first.split(" ")
        if len(parts) != 3 or not parts[2].startswith("HTTP/1.") or not (parts[0].isascii() and parts[0].isalpha()):
            return False
        length = content_length(headers)
        chunked = is_chunked(headers)
        if length == -1 and not chunked:
            return False
        ex = self._new_exchange(parts[0])
        ex.builder.request_started(self.req_head_ts, parts[0], parts[1], headers)
        self.queue.append(ex)
        self.req_exchange = ex
        if chunked:
            self.req_state = _BODY_CHUNKED
            self.req_chunks = ChunkDecoder()
        elif length:
            self.req_state = _BODY_LENGTH
            self.req_remaining = length
        else:
            self._request_done()
        return True

    def _request_body(self, data: bytes, ts: float) -> None:
        ex = self.req_exchange
        if ex is not None and not ex.finished:
            ex.builder.request_body(data, ts)

    def _request_done(self) -> None:
        self.req_state = _HEAD
        self.req_exchange = None

    def _request_gap(self, ts: float, size: int) -> None:
        state = self.req_state
        if state == _BODY_LENGTH and size < self.req_remaining:
            self._flag_gap(self.req_exchange)
            self.req_remaining -= size
            return
        if state in (_BODY_LENGTH, _BODY_CHUNKED):
            self._flag_gap(self.req_exchange)
            self._request_done()
        if state == _HEAD or (state == _BODY_LENGTH and size > self.req_remaining):
            # the client only sends requests: the hole held (part of) one we will never see
            ex = self._new_exchange("")
            self._flag_gap(ex)
            ex.builder.add_flags([FLAG_CAPTURE_STARTED_MID_REQUEST])
            self.queue.append(ex)
        self.req_state = _RESYNC
        self.req_buf = bytearray()

    # -- responses --------------------------------------------------------------------------------

    def _response_data(self, ts: float, data: bytes) -> None:
        self.resp_last_ts = ts if self.resp_exchange is not None else self.resp_last_ts
        while data and self._step():
            state = self.resp_state
            if state == _BODY_CHUNKED:
                try:
                    body, used = self.resp_chunks.feed(data)
                except ChunkError as exc:
                    ex = self.resp_exchange
                    if exc.body and ex is not None:
                        ex.builder.response_body(exc.body, ts)
                    self._flag_gap(ex)
                    self._enter_response_resync(ts, chunks=True)
                    # Resync must move past where this decode began, or it finds the same chunk anchor again.
                    self.resync_min_start = 0 if exc.at else 1
                    data = data[exc.at :]
                    continue
                ex = self.resp_exchange
                self.resp_last_ts = ts
                if body and ex is not None:
                    ex.builder.response_body(body, ts)
                data = data[used:]
                if self.resp_chunks.state == ChunkDecoder.DONE:
                    self._finish_response(ts)
            elif state == _HEAD:
                if not self.resp_buf:
                    data = data.lstrip(b"\r\n")
                    if not data:
                        return
                    self.resp_head_ts = ts
                buf = self.resp_buf
                scan_from = max(len(buf) - 3, 0)
                buf += data
                if len(buf) >= 5 and not buf.startswith(b"HTTP/"):
                    self._bad_response_head(ts)
                    return
                end = buf.find(_HEADER_END, scan_from)
                if end < 0:
                    if len(buf) > MAX_HEADER_BYTES:
                        self._bad_response_head(ts)
                    return
                head = bytes(buf[:end])
                data = bytes(buf[end + 4 :])
                self.resp_buf = bytearray()
                if not self._start_response(head, ts):
                    self._bad_response_head(ts)
                    return
            elif state == _BODY_LENGTH:
                take = min(self.resp_remaining, len(data))
                ex = self.resp_exchange
                self.resp_last_ts = ts
                if ex is not None:
                    ex.builder.response_body(data[:take] if take < len(data) else data, ts)
                self.resp_remaining -= take
                data = data[take:]
                if not self.resp_remaining:
                    self._finish_response(ts)
            elif state == _BODY_CLOSE:
                ex = self.resp_exchange
                self.resp_last_ts = ts
                if ex is not None:
                    ex.builder.response_body(data, ts)
                return
            elif state == _RESYNC:
                data = self._response_resync(ts, data)
            else:
                return

    def _bad_response_head(self, ts: float) -> None:
        if self.syn_seen and not self.exchanges_seen:
            self._declare_non_http()
            return
        self.resp_buf = bytearray()
        self._enter_response_resync(ts, chunks=True)

    def _take_exchange(self) -> _Exchange:
        """The oldest request still waiting for its response, or a stand-in for a request not captured."""
        while self.queue:
            ex = self.queue[0]
            if not ex.finished:
                return ex
            self.queue.popleft()
        ex = self._new_exchange("")
        ex.builder.add_flags([FLAG_CAPTURE_STARTED_MID_REQUEST])
        self.queue.append(ex)
        return ex

    def _start_response(self, head: bytes, ts: float) -> bool:
        parsed = parse_head(head)
        if parsed is None:
            return False
        first, headers = parsed
        parts = first.split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not (parts[1].isascii() and parts[1].isdigit()):
            return False
        status = int(parts[1])
        length = content_length(headers)
        chunked = is_chunked(headers)
        if length == -1 and not chunked:
            return False
        if 100 <= status < 200 and status != 101:
            return True  # interim response: the real one follows
        ex = self._take_exchange()
        ex.builder.response_started(self.resp_head_ts, status, headers)
        ex.responded = True
        self.resp_exchange = ex
        self.resp_last_ts = ts
        if status == 101:
            self._finish_response(ts)
            self.req_state = self.resp_state = _DEAD  # another protocol follows
        elif ex.method == "HEAD" or status in (204, 304):
            self._finish_response(ts)
        elif chunked:
            self.resp_state = _BODY_CHUNKED
            self.resp_chunks = ChunkDecoder()
        elif length is not None:
            if length:
                self.resp_state = _BODY_LENGTH
                self.resp_remaining = length
            else:
                self._finish_response(ts)
        else:
            self.resp_state = _BODY_CLOSE
        return True

    def _finish_response(self, ts: float) -> None:
        ex = self.resp_exchange
        if self.queue and self.queue[0] is ex:
            self.queue.popleft()
        self.resp_state = _HEAD
        if ex is not None and not ex.finished:
            self._emit(ex, ts)
        self.resp_exchange = None

    def _enter_response_resync(self, ts: float, *, chunks: bool) -> None:
        self.resp_state = _RESYNC
        self.resync_chunks = chunks
        self.resp_buf = bytearray()
        self.resync_ts = ts

    def _response_resync(self, ts: float, data: bytes) -> bytes:
        """Look for the next status line or chunk boundary; returns the bytes to parse from there."""
        buf = self.resp_buf
        if not buf:
            self.resync_ts = ts
        scan_from = max(len(buf) - 24, 0)
        buf += data
        min_start, self.resync_min_start = self.resync_min_start, 0
        status = _STATUS_LINE.search(buf, max(scan_from, min_start))
        anchor = _CHUNK_ANCHOR.search(buf, scan_from) if self.resync_chunks else None
        if anchor is not None and _anchor_start(buf, anchor) < min_start:
            anchor = _CHUNK_ANCHOR.search(buf, max(scan_from, min_start))
        ex = self.resp_exchange
        last = _LAST_CHUNK.search(buf, scan_from) if ex is not None and self.resync_chunks else None
        candidates = [m for m in (status, anchor, last) if m is not None]
        if not candidates:
            if len(buf) > MAX_RESYNC_BYTES:
                del buf[: len(buf) - 128]
            return b""
        match = min(candidates, key=lambda m: m.start())
        before = bytes(buf[: match.start()])
        self.resp_buf = bytearray()
        if match is status:
            if ex is not None:
                self._finish_incomplete(ex, self.resp_last_ts or ts, [])
            self.resp_state = _HEAD
            return bytes(buf[match.start() :])
        if ex is None:
            # the capture (or a hole) began inside a response body: a record without status/headers
            ex = self._take_exchange()
            ex.builder.response_started(self.resync_ts, None, None, mid_response=True)
            ex.responded = True
            self.resp_exchange = ex
        if before:
            ex.builder.response_body(before, self.resync_ts)
        self.resp_last_ts = ts
        if match is last:
            self.resp_state = _HEAD
            self._finish_response(ts)
            return bytes(buf[match.end() :])
        self.resp_state = _BODY_CHUNKED
        self.resp_chunks = ChunkDecoder()
        return bytes(buf[_anchor_start(buf, match) :])

    def _response_gap(self, ts: float, size: int) -> None:
        state = self.resp_state
        ex = self.resp_exchange
        if state == _BODY_LENGTH and size < self.resp_remaining:
            self._flag_gap(ex)
            self.resp_remaining -= size
            return
        if state == _BODY_CLOSE:
            self._flag_gap(ex)
            return
        if state == _BODY_CHUNKED:
            self._flag_gap(ex)
            self._enter_response_resync(ts, chunks=True)
            return
        if state == _BODY_LENGTH and ex is not None:
            self._flag_gap(ex)
            self._finish_response(ts)
        elif state == _RESYNC and ex is not None:
            self._flag_gap(ex)
        else:
            # a response head (maybe with body) fell into the hole: it belongs to the oldest request
            while self.queue and self.queue[0].finished:
                self.queue.popleft()
            if self.queue:
                self._flag_gap(self.queue[0])
        self._enter_response_resync(ts, chunks=True)
