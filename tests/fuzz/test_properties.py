"""Property-based tests over every parser the analyzer and the addon run on untrusted bytes.

Properties: no unexpected exception; work bounded linear in the input (lines executed, counted by
``steps.count_lines`` — no timed assertions); a well-formed input split at arbitrary byte boundaries
gives the same result as unsplit. Profiles: ``ci`` (default) and ``soak`` (``make fuzz``).
"""

from __future__ import annotations

import json
import struct
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import hypothesis.strategies as st
import pytest
from hypothesis import HealthCheck, given, settings
from seeds import conversation_segments, ndjson_lines, sse_events
from steps import count_lines

from analyzer.pcap.captures import iter_packets
from analyzer.pcap.errors import CaptureError
from analyzer.pcap.exchanges import ExchangeStats, exchanges_from_segments
from analyzer.pcap.http import HttpConnection, HttpStats
from analyzer.pcap.http_framing import ChunkDecoder, ChunkError, parse_head
from analyzer.pcap.linklayer import SUPPORTED_LINKTYPES, decode_frame
from analyzer.pcap.segments import ACK, FIN, PSH, RST, SYN, TcpSegment
from analyzer.pcap.tcp import TcpReassembler
from analyzer.protocol.framing import LineSplitter, SseSplitter
from analyzer.protocol.interaction import InteractionBuilder
from analyzer.store.log import LogError, iter_log_dicts

# Per-byte and per-call line budgets: generous constants, but linear. A parser that loops without
# consuming input (the chunked-resync hang) runs into them at once.
PER_BYTE = 40
PER_CALL = 600
BASE = 5000

fragment_sizes = st.lists(st.integers(min_value=1, max_value=64), min_size=1, max_size=40)


def split(data: bytes, sizes: list[int]) -> list[bytes]:
    """``data`` cut into pieces of the given sizes (cycled), none empty."""
    out, i, k = [], 0, 0
    while i < len(data):
        size = sizes[k % len(sizes)]
        out.append(data[i : i + size])
        i += size
        k += 1
    return out


def bound(total_bytes: int, calls: int) -> int:
    return PER_BYTE * total_bytes + PER_CALL * calls + BASE


# -- HTTP/1.1 framing ----------------------------------------------------------------------------------


def chunk_body(parts: list[bytes], extension: bool) -> bytes:
    ext = b";x=1" if extension else b""
    return b"".join(b"%x%s\r\n%s\r\n" % (len(p), ext, p) for p in parts if p) + b"0\r\n\r\n"


@given(st.lists(st.binary(min_size=1, max_size=80), max_size=12), st.booleans(), fragment_sizes)
def test_chunk_decoder_split_anywhere_gives_the_same_body(parts: list[bytes], ext: bool, sizes: list[int]) -> None:
    wire = chunk_body(parts, ext)
    decoder = ChunkDecoder()
    out = []
    for piece in split(wire, sizes):
        body, used = decoder.feed(piece)
        out.append(body)
        assert used == len(piece) or decoder.state == ChunkDecoder.DONE
    assert decoder.state == ChunkDecoder.DONE
    assert b"".join(out) == b"".join(parts)


@given(st.binary(max_size=2048), fragment_sizes)
def test_chunk_decoder_on_garbage_raises_only_chunk_error(data: bytes, sizes: list[int]) -> None:
    decoder = ChunkDecoder()
    for piece in split(data, sizes):
        try:
            _body, used = decoder.feed(piece)
        except ChunkError as exc:
            assert 0 <= exc.at <= len(piece)
            return
        assert 0 <= used <= len(piece)


@given(st.binary(max_size=512))
def test_parse_head_never_raises(head: bytes) -> None:
    parse_head(head)


class Recording:
    """An ExchangeBuilder that records what the HTTP layer gave it."""

    def __init__(self, client: str, server: str) -> None:
        self.request: tuple[str, str] | None = None
        self.status: int | None = None
        self.req_body = bytearray()
        self.resp_body = bytearray()
        self.flags: list[str] = []

    def request_started(self, at: float, method: str, path: str, headers: Mapping[str, str]) -> None:
        self.request = (method, path)

    def request_body(self, data: bytes, at: float) -> None:
        self.req_body += data

    def response_started(
        self, at: float, status: int | None, headers: Mapping[str, str] | None, *, mid_response: bool = False
    ) -> None:
        self.status = status

    def response_body(self, data: bytes, at: float) -> None:
        self.resp_body += data

    def add_flags(self, flags: Iterable[str]) -> None:
        self.flags.extend(flags)

    def finish(self, at: float | None = None, *, error: str | None = None) -> tuple[Any, ...]:
        return (self.request, self.status, bytes(self.req_body), bytes(self.resp_body), tuple(sorted(self.flags)))


def http_wire(kinds: list[str], pipelined: bool) -> tuple[bytes, bytes]:
    """The client and server byte streams of one keep-alive connection (from the fuzz seeds)."""
    segs = conversation_segments(kinds, pipelined=pipelined)
    client = b"".join(s.payload for s in segs if s.dport == 11434)
    server = b"".join(s.payload for s in segs if s.sport == 11434)
    return client, server


def run_http(
    client_pieces: list[bytes], server_pieces: list[bytes], *, syn_seen: bool = True
) -> tuple[list, HttpStats, int]:
    results: list[Any] = []
    stats = HttpStats()
    conn = HttpConnection(("10.0.0.1", 50000, "10.0.0.2", 11434), syn_seen, Recording, results.append, stats)
    ts = 1.0
    for piece in client_pieces:
        conn.on_data(True, ts, piece)
        ts += 0.001
    for piece in server_pieces:
        conn.on_data(False, ts, piece)
        ts += 0.001
    conn.on_end(True, ts)
    conn.on_end(False, ts)
    conn.on_close(ts, "fin")
    return results, stats, conn.steps


exchange_kinds = st.lists(st.sampled_from(["ndjson", "sse", "json"]), min_size=1, max_size=4)


@given(exchange_kinds, st.booleans(), fragment_sizes, fragment_sizes)
def test_http_split_anywhere_gives_the_same_exchanges(
    kinds: list[str], pipelined: bool, csizes: list[int], ssizes: list[int]
) -> None:
    client, server = http_wire(kinds, pipelined)
    whole, _, _ = run_http([client], [server])
    assert len(whole) == len(kinds) and all(r[4] == () for r in whole)
    pieces, stats, _ = run_http(split(client, csizes), split(server, ssizes))
    assert pieces == whole
    assert stats.stalled_connections == 0


@given(
    exchange_kinds,
    st.lists(st.tuples(st.integers(min_value=0, max_value=4000), st.binary(max_size=24)), max_size=6),
    st.booleans(),
    fragment_sizes,
)
def test_http_damaged_streams_end_within_a_linear_bound(
    kinds: list[str], damage: list[tuple[int, bytes]], syn_seen: bool, sizes: list[int]
) -> None:
    client, server = http_wire(kinds, False)
    data = bytearray(server)
    for at, junk in damage:  # overwrite, insert or delete a little anywhere in the response stream
        at %= len(data) + 1
        if junk and junk[0] % 3 == 0:
            del data[at : at + len(junk)]
        elif junk and junk[0] % 3 == 1:
            data[at:at] = junk
        else:
            data[at : at + len(junk)] = junk
    pieces = split(bytes(data), sizes)
    (results, stats, steps), lines = count_lines(
        lambda: run_http([client], pieces, syn_seen=syn_seen), bound(len(client) + len(data), len(pieces) + 1)
    )
    assert stats.stalled_connections == 0
    assert steps <= 3 * (len(client) + len(data)) + 4 * (len(pieces) + 1)


def test_chunk_anchor_that_fails_to_decode_does_not_hang() -> None:
    """The issue's hang: a chunk whose data is not followed by CRLF, resynchronised onto itself forever."""
    head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
    request = b"POST /api/generate HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}"
    (results, stats, steps), _ = count_lines(
        lambda: run_http([request], [head + b"5\r\n{abcdefgh\r\n3\r\n{x}\r\n0\r\n\r\n"]), 100_000
    )
    assert stats.stalled_connections == 0 and len(results) == 1
    assert "gap_in_capture" in results[0][4]


# -- packets, link layers, TCP ---------------------------------------------------------------------------------


@given(st.sampled_from(sorted(SUPPORTED_LINKTYPES)), st.binary(max_size=200))
def test_decode_frame_never_raises(linktype: int, frame: bytes) -> None:
    segment = decode_frame(1.0, linktype, memoryview(frame))
    assert segment is None or len(segment.payload) <= len(frame)


PCAP_HEAD = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)
PCAPNG_HEAD = struct.pack("<IIIHHqI", 0x0A0D0D0A, 28, 0x1A2B3C4D, 1, 0, -1, 28)


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.sampled_from([PCAP_HEAD, PCAPNG_HEAD, b""]), st.binary(max_size=1024))
def test_capture_reader_raises_only_capture_errors(tmp_path: Path, head: bytes, body: bytes) -> None:
    path = tmp_path / "f.pcap"
    path.write_bytes(head + body)
    try:
        packets = sum(1 for _ in iter_packets(str(path)))
    except CaptureError:
        return
    assert packets <= (len(head) + len(body)) // 12 + 1


segment_strategy = st.builds(
    TcpSegment,
    ts=st.floats(min_value=0, max_value=100, allow_nan=False),
    src=st.sampled_from(["10.0.0.1", "10.0.0.2"]),
    sport=st.sampled_from([50000, 50001, 11434]),
    dst=st.sampled_from(["10.0.0.1", "10.0.0.2"]),
    dport=st.sampled_from([50000, 11434]),
    seq=st.integers(min_value=0, max_value=0xFFFFFFFF) | st.integers(min_value=990, max_value=1200),
    ack=st.integers(min_value=0, max_value=0xFFFFFFFF) | st.integers(min_value=4990, max_value=5200),
    flags=st.sampled_from([ACK, ACK | PSH, SYN, SYN | ACK, FIN | ACK, RST, RST | ACK]),
    payload=st.binary(max_size=64) | st.sampled_from([b"GET / HTTP/1.1\r\n\r\n", b"HTTP/1.1 200 OK\r\n\r\n"]),
    truncated=st.booleans(),
)


@given(st.lists(segment_strategy, max_size=40))
def test_tcp_reassembly_of_arbitrary_segments_is_bounded(segments: list[TcpSegment]) -> None:
    stats = ExchangeStats()
    total = sum(len(s.payload) for s in segments)
    (records, lines) = count_lines(
        lambda: list(exchanges_from_segments(segments, [11434], Recording, stats)), bound(total, len(segments) + 1)
    )
    assert stats.stalled_connections == 0


@given(exchange_kinds, st.randoms(use_true_random=False))
def test_tcp_reordered_and_retransmitted_segments_give_the_same_exchanges(kinds: list[str], rng: Any) -> None:
    segs = conversation_segments(kinds)
    whole = list(exchanges_from_segments(segs, [11434], Recording))
    shuffled = segs[3:-3]
    for _ in range(4):
        # out of order within one direction, and a retransmission some time after the original
        i = rng.randrange(len(shuffled) - 1)
        if shuffled[i].sport == shuffled[i + 1].sport:
            shuffled[i], shuffled[i + 1] = shuffled[i + 1], shuffled[i]
        j = rng.randrange(len(shuffled))
        shuffled.insert(rng.randrange(j + 1, len(shuffled) + 1), shuffled[j])
    again = list(exchanges_from_segments([*segs[:3], *shuffled, *segs[-3:]], [11434], Recording))
    assert [r[:4] for r in again] == [r[:4] for r in whole]


@given(st.lists(segment_strategy, max_size=30))
def test_reassembler_finish_closes_everything(segments: list[TcpSegment]) -> None:
    events: list[str] = []

    class Sink:
        def on_data(self, from_client: bool, ts: float, data: bytes) -> None:
            assert data
            events.append("data")

        def on_gap(self, from_client: bool, ts: float, size: int) -> None:
            assert size > 0
            events.append("gap")

        def on_end(self, from_client: bool, ts: float) -> None:
            events.append("end")

        def on_close(self, ts: float, reason: str, reset_by_client: bool = False) -> None:
            events.append("close")

    reassembler = TcpReassembler([11434], lambda key, ts, syn: Sink())
    reassembler.feed_all(segments)
    assert reassembler.open_connections == 0
    assert len(events) <= 4 * len(segments) + 2


# -- NDJSON / SSE splitting and the protocol core -----------------------------------------------------------------


@given(st.lists(st.binary(max_size=40).filter(lambda b: b"\n" not in b), max_size=20), fragment_sizes)
def test_line_splitter_split_anywhere(lines: list[bytes], sizes: list[int]) -> None:
    wire = b"".join(line + b"\n" for line in lines)
    splitter = LineSplitter(1 << 20)
    out = [line for piece in split(wire, sizes) for line in splitter.feed(piece)]
    assert out == lines and splitter.flush() is None


@given(st.binary(max_size=2048), fragment_sizes, st.integers(min_value=1, max_value=64))
def test_splitters_on_garbage_are_bounded(data: bytes, sizes: list[int], max_unit: int) -> None:
    pieces = split(data, sizes)

    def run() -> None:
        lines, events = LineSplitter(max_unit), SseSplitter(max_unit)
        for piece in pieces:
            assert all(len(x) <= max_unit for x in lines.feed(piece))
            events.feed(piece)
        lines.flush()
        events.flush()

    count_lines(run, bound(len(data), len(pieces)))


def build(mode: str, pieces: list[bytes], *, mid_response: bool = False) -> Any:
    content_type = {"ndjson": "application/x-ndjson", "sse": "text/event-stream", "json": "application/json"}[mode]
    path = {"ndjson": "/api/chat", "sse": "/v1/chat/completions", "json": "/api/generate"}[mode]
    builder = InteractionBuilder(source="pcap", record_id="r")
    builder.request_started(1.0, "POST", path, {})
    builder.request_body(b'{"model":"m","stream":true}', 1.0)
    if mid_response:
        builder.response_started(1.1, None, None, mid_response=True)
    else:
        builder.response_started(1.1, 200, {"Content-Type": content_type})
    for i, piece in enumerate(pieces):
        builder.response_body(piece, 1.2 + i * 0.001)
    return builder.finish(2.0)


words = st.lists(st.text(max_size=8), min_size=1, max_size=10)


@given(st.sampled_from(["ndjson", "sse"]), words, fragment_sizes, st.booleans())
def test_interaction_builder_split_anywhere_gives_the_same_text(
    mode: str, tokens: list[str], sizes: list[int], mid_response: bool
) -> None:
    wire = b"".join(ndjson_lines(tokens) if mode == "ndjson" else sse_events(tokens))
    whole = build(mode, [wire], mid_response=mid_response)
    assert whole.response_text == "".join(tokens) and whole.complete
    pieces = split(wire, sizes)
    record = build(mode, pieces, mid_response=mid_response)
    assert (record.response_text, record.chunks, record.flags, record.complete) == (
        whole.response_text,
        whole.chunks,
        whole.flags,
        whole.complete,
    )


@given(st.sampled_from(["ndjson", "sse", "json"]), st.binary(max_size=2048), fragment_sizes, st.booleans())
def test_interaction_builder_on_garbage_is_bounded(mode: str, data: bytes, sizes: list[int], mid: bool) -> None:
    pieces = split(data, sizes)
    record, _ = count_lines(lambda: build(mode, pieces, mid_response=mid), bound(len(data), len(pieces)))
    record.to_json()


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=8,
)
fields = st.sampled_from(
    [
        "model",
        "response",
        "message",
        "done",
        "done_reason",
        "error",
        "eval_count",
        "eval_duration",
        "choices",
        "object",
        "delta",
        "content",
        "thinking",
        "tool_calls",
        "usage",
        "created_at",
        "status",
    ]
)


@given(
    st.sampled_from(["ndjson", "sse", "json"]), st.lists(st.dictionaries(fields, json_values, max_size=5), max_size=3)
)
def test_json_bodies_of_any_shape_never_raise(mode: str, objects: list[dict[str, Any]]) -> None:
    if mode == "sse":
        wire = b"".join(b"data: " + json.dumps(o).encode() + b"\n\n" for o in objects)
    elif mode == "ndjson":
        wire = b"".join(json.dumps(o).encode() + b"\n" for o in objects)
    else:
        wire = json.dumps(objects[0] if objects else {}).encode()
    build(mode, [wire]).to_json()


# -- the addon's stream callable ------------------------------------------------------------------------


@given(st.lists(st.binary(max_size=200), max_size=20), st.sampled_from(["application/x-ndjson", "text/event-stream"]))
def test_addon_stream_callable_passes_every_fragment_unchanged(fragments: list[bytes], content_type: str) -> None:
    from analyzer.recorder.addon import OllamaLog

    addon = OllamaLog()
    builder = InteractionBuilder(source="proxy", record_id="r")
    builder.request_started(1.0, "POST", "/api/chat", {})
    builder.response_started(1.1, 200, {"Content-Type": content_type})
    observe = addon._stream_callable("r", builder, None)
    for fragment in fragments:
        assert observe(fragment) is fragment
    builder.finish(2.0).to_json()


# -- the log reader ------------------------------------------------------------------------------------------


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.binary(max_size=120) | st.sampled_from([b'{"id": 1}', b"{}", b"[]", b'{"id":"x","source":"proxy"'])))
def test_log_reader_skips_what_is_not_a_record(tmp_path: Path, lines: list[bytes]) -> None:
    log_dir = tmp_path / "log"
    log_dir.mkdir(exist_ok=True)
    (log_dir / "2026-01-01.jsonl").write_bytes(b"\n".join(lines))
    warnings: list[str] = []
    try:
        records = list(iter_log_dicts(log_dir, warn=warnings.append))
    except LogError:
        pytest.fail("a readable log file never raises")
    data = b"\n".join(lines)
    assert len(records) + len(warnings) <= data.count(b"\n") + data.count(b"\r") + 1  # universal newlines
    assert all(w.startswith(str(log_dir)) for w in warnings)
