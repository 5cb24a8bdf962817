"""The fast engine's pipeline: capture file → TCP segments → reassembled streams → HTTP exchanges.

Each finished exchange is whatever the builder's ``finish`` returns (an ``InteractionRecord`` with
the real builder). Counters for the CLI's summary are kept in an :class:`ExchangeStats`.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Collection, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from analyzer.pcap.captures import iter_packets
from analyzer.pcap.http import BuilderFactory, HttpConnection, HttpStats
from analyzer.pcap.linklayer import SUPPORTED_LINKTYPES, segments_from_packets
from analyzer.pcap.segments import TcpSegment
from analyzer.pcap.tcp import ConnectionKey, TcpReassembler


@dataclass
class ExchangeStats:
    """What a run saw, for the summary line ("N connections on the port were not Ollama HTTP, skipped")."""

    connections: int = 0
    http_connections: int = 0
    non_http_connections: int = 0
    unparsed_connections: int = 0
    stalled_connections: int = 0  # given up by the HTTP parser's work bound (a parser bug, reported)
    exchanges: int = 0
    gaps: int = 0  # holes in the reassembled streams
    gap_bytes: int = 0
    retransmitted_segments: int = 0
    out_of_order_segments: int = 0


def exchanges_from_segments(
    segments: Iterable[TcpSegment],
    server_ports: Collection[int],
    builder_factory: BuilderFactory,
    stats: ExchangeStats | None = None,
) -> Iterator[Any]:
    """Reassemble ``segments`` and yield each exchange's ``builder.finish()`` result as it completes.

    ``builder_factory(client, server)`` gets ``"ip:port"`` texts (IPv6 as ``"[ip]:port"``) and returns
    a fresh builder per exchange. ``stats`` (if given) is filled in as the run goes and completed when
    the iterator is exhausted.
    """
    results: deque[Any] = deque()
    http_stats = HttpStats()

    def connection(key: ConnectionKey, _ts: float, syn_seen: bool) -> HttpConnection:
        return HttpConnection(key, syn_seen, builder_factory, results.append, http_stats)

    reassembler = TcpReassembler(server_ports, connection)
    feed = reassembler.feed
    pop = results.popleft
    for seg in segments:
        feed(seg)
        while results:
            yield pop()
    reassembler.finish()
    while results:
        yield pop()
    if stats is not None:
        tcp = reassembler.stats
        stats.connections = tcp.connections
        stats.gaps = tcp.gaps
        stats.gap_bytes = tcp.gap_bytes
        stats.retransmitted_segments = tcp.retransmitted_segments
        stats.out_of_order_segments = tcp.out_of_order_segments
        stats.http_connections = http_stats.http_connections
        stats.non_http_connections = http_stats.non_http_connections
        stats.unparsed_connections = http_stats.unparsed_connections
        stats.stalled_connections = http_stats.stalled_connections
        stats.exchanges = http_stats.exchanges


def exchanges_from_capture(
    path: str,
    server_ports: Collection[int],
    builder_factory: BuilderFactory,
    stats: ExchangeStats | None = None,
    on_warning: Callable[[str], None] | None = None,
) -> Iterator[Any]:
    """All exchanges in one pcap/pcapng file (streamed; memory does not grow with file size)."""
    ports = frozenset(server_ports)
    packets = iter_packets(path, supported_linktypes=SUPPORTED_LINKTYPES, on_warning=on_warning)
    return exchanges_from_segments(segments_from_packets(packets, ports), ports, builder_factory, stats)
