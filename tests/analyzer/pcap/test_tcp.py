"""Tests for analyzer.pcap.tcp: per-connection, per-direction reassembly."""

from __future__ import annotations

from typing import Any

from analyzer.pcap.segments import ACK, FIN, SYN, TcpSegment
from analyzer.pcap.tcp import HOLE_PATIENCE, MAX_PENDING_SEGMENTS, TcpReassembler
from tests.support.frames import Conversation


class Recorder:
    """A StreamSink that records every event of one connection."""

    def __init__(self, key: tuple[str, int, str, int], syn_seen: bool) -> None:
        self.key = key
        self.syn_seen = syn_seen
        self.events: list[tuple[Any, ...]] = []

    def on_data(self, from_client: bool, ts: float, data: bytes) -> None:
        self.events.append(("data", from_client, ts, data))

    def on_gap(self, from_client: bool, ts: float, size: int) -> None:
        self.events.append(("gap", from_client, size))

    def on_end(self, from_client: bool, ts: float) -> None:
        self.events.append(("end", from_client))

    def on_close(self, ts: float, reason: str, reset_by_client: bool = False) -> None:
        self.events.append(("close", reason, reset_by_client))

    def stream(self, from_client: bool) -> bytes:
        return b"".join(e[3] for e in self.events if e[0] == "data" and e[1] == from_client)


def run(
    segments: list[TcpSegment], ports: frozenset[int] = frozenset({11434})
) -> tuple[list[Recorder], TcpReassembler]:
    sinks: list[Recorder] = []

    def factory(key: tuple[str, int, str, int], ts: float, syn_seen: bool) -> Recorder:
        sinks.append(Recorder(key, syn_seen))
        return sinks[-1]

    reassembler = TcpReassembler(ports, factory)
    reassembler.feed_all(segments)
    return sinks, reassembler


def test_in_order_with_handshake_and_close() -> None:
    c = Conversation()
    segs = [*c.handshake(), c.c(b"GET / HTTP/1.1\r\n\r\n"), c.s(b"HTTP/1.1 200 OK\r\n"), c.s(b"\r\n"), *c.close()]
    (sink,), r = run(segs)
    assert sink.key == ("10.0.0.1", 50000, "10.0.0.2", 11434) and sink.syn_seen
    assert sink.stream(True) == b"GET / HTTP/1.1\r\n\r\n"
    assert sink.stream(False) == b"HTTP/1.1 200 OK\r\n\r\n"
    assert sink.events[-3:] == [("end", True), ("end", False), ("close", "fin", False)]
    assert r.open_connections == 0


def test_each_run_keeps_its_packet_timestamp() -> None:
    c = Conversation()
    segs = [*c.handshake(), c.s(b"a"), c.s(b"b")]
    (sink,), _ = run(segs)
    data = [e for e in sink.events if e[0] == "data"]
    assert [(e[2], e[3]) for e in data] == [(segs[3].ts, b"a"), (segs[4].ts, b"b")]


def test_out_of_order_buffered_then_delivered_with_own_timestamps() -> None:
    c = Conversation()
    hs = c.handshake()
    a, b, d = c.s(b"aaa"), c.s(b"bbb"), c.s(b"ccc")
    (sink,), r = run([*hs, a, d, b])
    assert sink.stream(False) == b"aaabbbccc"
    data = [(e[2], e[3]) for e in sink.events if e[0] == "data"]
    assert data == [(a.ts, b"aaa"), (b.ts, b"bbb"), (d.ts, b"ccc")]
    assert r.stats.out_of_order_segments == 1 and r.stats.gaps == 0


def test_retransmit_and_overlap_trimmed_first_bytes_win() -> None:
    c = Conversation()
    hs = c.handshake()
    base = c.sseq
    a = c.s(b"hello ")
    b = c.s(b"world")
    retrans = c.s(b"hello ", seq=base)
    overlap = c.s(b"XXXXX!!", seq=base + 6)  # 5 old bytes (different content) + 2 new
    (sink,), r = run([*hs, a, b, retrans, overlap])
    assert sink.stream(False) == b"hello world!!"
    assert r.stats.retransmitted_segments == 2  # the full duplicate and the partial overlap


def test_overlap_of_buffered_segments() -> None:
    c = Conversation()
    hs = c.handshake()
    base = c.sseq
    first = c.s(b"0123", seq=base)
    late1 = c.s(b"89ab", seq=base + 8)
    late2 = c.s(b"6789abcd", seq=base + 6)
    fill = c.s(b"456", seq=base + 4)
    (sink,), _ = run([*hs, first, late1, late2, fill])
    assert sink.stream(False) == b"0123456789abcd"


def test_sequence_wraparound() -> None:
    c = Conversation(cisn=0xFFFFFFF0, sisn=0xFFFFFFFA)
    hs = c.handshake()
    reqs = [c.c(b"x" * 10), c.c(b"y" * 10)]  # crosses 2^32
    resp = [c.s(b"1234"), c.s(b"5678")]
    (sink,), r = run([*hs, reqs[1], reqs[0], *resp])
    assert sink.stream(True) == b"x" * 10 + b"y" * 10
    assert sink.stream(False) == b"12345678"
    assert r.stats.gaps == 0


def test_missing_segment_reported_as_gap_when_peer_acks_past_it() -> None:
    c = Conversation()
    hs = c.handshake()
    a, lost, d = c.s(b"aaa"), c.s(b"bbbb"), c.s(b"ccc")
    del lost
    acks = [c.c(flags=ACK) for _ in range(HOLE_PATIENCE + 1)]  # the client ACKs everything
    (sink,), r = run([*hs, a, d, *acks])
    events = [e for e in sink.events if e[0] in ("data", "gap")]
    assert [(e[0], e[-1]) for e in events] == [("data", b"aaa"), ("gap", 4), ("data", b"ccc")]
    assert r.stats.gaps == 1 and r.stats.gap_bytes == 4


def test_missing_segment_reported_at_capture_end() -> None:
    c = Conversation()
    hs = c.handshake()
    a, _lost, d = c.s(b"aaa"), c.s(b"bbbb"), c.s(b"ccc")
    (sink,), _ = run([*hs, a, d])
    assert ("gap", False, 4) in sink.events
    assert sink.stream(False) == b"aaaccc"
    assert sink.events[-1] == ("close", "capture_end", False)


def test_pending_bound_forces_gap() -> None:
    c = Conversation()
    hs = c.handshake()
    c.s(b"lost")
    later = [c.s(b"z") for _ in range(MAX_PENDING_SEGMENTS + 5)]
    (sink,), _ = run([*hs, *later])
    assert sink.events.index(("gap", False, 4)) < len(sink.events) - 2
    assert sink.stream(False) == b"z" * len(later)


def test_capture_started_mid_connection() -> None:
    c = Conversation()
    c.handshake()
    segs = [c.c(flags=ACK), c.s(b"partial body"), c.c(b"next"), c.s(b"more")]
    (sink,), _ = run(segs)
    assert not sink.syn_seen
    assert sink.stream(False) == b"partial bodymore" and sink.stream(True) == b"next"


def test_port_reuse_new_syn_is_new_connection() -> None:
    c1 = Conversation(cisn=100)
    first = [*c1.handshake(), c1.c(b"one"), *c1.close()]
    c2 = Conversation(cisn=900000, ts=2000.0)
    second = [*c2.handshake(), c2.c(b"two"), c2.reset()]
    sinks, r = run([*first, *second])
    assert [s.stream(True) for s in sinks] == [b"one", b"two"]
    assert sinks[1].events[-1] == ("close", "rst", True)
    assert r.stats.connections == 2


def test_port_reuse_without_seen_close() -> None:
    c1 = Conversation(cisn=100)
    c2 = Conversation(cisn=900000, ts=2000.0)
    sinks, _ = run([*c1.handshake(), c1.c(b"one"), *c2.handshake(), c2.c(b"two")])
    assert [s.stream(True) for s in sinks] == [b"one", b"two"]
    assert sinks[0].events[-1] == ("close", "capture_end", False)


def test_stray_segments_after_close_ignored_and_state_freed() -> None:
    c = Conversation()
    segs = [*c.handshake(), c.c(b"x"), *c.close()]
    late = c.c(b"x", seq=c.cseq - 2)
    sinks, r = run([*segs, late, c.c(flags=ACK)])
    assert len(sinks) == 1 and r.open_connections == 0


def test_fin_with_data_and_retransmitted_syn() -> None:
    c = Conversation()
    syn = c.c(flags=SYN)
    again = TcpSegment(syn.ts, syn.src, syn.sport, syn.dst, syn.dport, syn.seq, 0, SYN, b"")
    segs = [syn, again, c.s(flags=SYN | ACK), c.c(flags=ACK), c.s(b"bye", flags=FIN | ACK)]
    (sink,), _ = run(segs)
    assert sink.stream(False) == b"bye" and ("end", False) in sink.events


def test_other_ports_ignored() -> None:
    c = Conversation(sport=80)
    sinks, _ = run([*c.handshake(), c.c(b"x")])
    assert sinks == []


def test_lost_tail_segment_reported_when_acked() -> None:
    c = Conversation()
    hs = c.handshake()
    a = c.c(b"head")
    c.c(b"lost body")
    later = [c.s(b"resp")] + [c.c(flags=ACK) for _ in range(3)]
    (sink,), r = run([*hs, a, *later])
    assert ("gap", True, 9) in sink.events and r.stats.gap_bytes == 9
