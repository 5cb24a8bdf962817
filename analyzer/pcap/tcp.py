"""TCP reassembly: turn captured segments into per-connection, per-direction ordered byte runs.

A connection is identified by (client ip, client port, server ip, server port), the server being
the side whose port is one of the server ports. Each direction is reassembled by sequence number
(32-bit wrap-around handled by serial-number arithmetic); out-of-order segments are buffered up
to a bound; retransmitted/overlapping bytes are trimmed. Bytes that never appear in the capture
become a *gap* event, after which delivery continues. A consumer (:class:`StreamSink`) gets:

* ``on_data(from_client, ts, data)`` — the next bytes of one direction, as carried by one packet
  (``ts`` is that packet's capture time);
* ``on_gap(from_client, ts, size)`` — ``size`` bytes of that direction were not captured;
* ``on_end(from_client, ts)`` — that direction's FIN was reached;
* ``on_close(ts, reason)`` — the connection is over: ``"fin"``, ``"rst"`` (``reset_by_client``
  tells who) or ``"capture_end"`` (``ts`` is then the last time seen on the connection).
"""

from __future__ import annotations

from bisect import insort
from collections import OrderedDict
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass
from typing import Protocol

from analyzer.pcap.segments import ACK, FIN, RST, SYN, TcpSegment

MASK = 0xFFFFFFFF
HALF = 0x80000000

# Out-of-order bytes buffered per direction before the missing range is declared a gap.
MAX_PENDING_BYTES = 4 << 20
MAX_PENDING_SEGMENTS = 2048
# Segments on a connection after the peer ACKed past a hole before the hole is declared a gap
# (captures on "any" can reorder packets slightly, so an ACK may precede the data it covers).
HOLE_PATIENCE = 8
# Closed connection keys remembered so stray late segments do not open phantom connections.
_RECENTLY_CLOSED = 4096

ConnectionKey = tuple[str, int, str, int]  # client ip, client port, server ip, server port


class StreamSink(Protocol):
    """Receives the reassembled byte streams of one connection."""

    def on_data(self, from_client: bool, ts: float, data: bytes) -> None: ...

    def on_gap(self, from_client: bool, ts: float, size: int) -> None: ...

    def on_end(self, from_client: bool, ts: float) -> None: ...

    def on_close(self, ts: float, reason: str, reset_by_client: bool = False) -> None: ...


SinkFactory = Callable[[ConnectionKey, float, bool], StreamSink]


@dataclass
class ReassemblyStats:
    """Counters over a whole run."""

    connections: int = 0
    gaps: int = 0
    gap_bytes: int = 0
    retransmitted_segments: int = 0  # segments carrying bytes already seen (wholly or partly)
    out_of_order_segments: int = 0


class _Direction:
    """Reassembly state of one direction of one connection."""

    __slots__ = ("acked_pos", "ended", "fin_pos", "hole_acked", "next_seq", "pending", "pending_bytes", "pos", "stale")

    def __init__(self) -> None:
        self.next_seq: int | None = None  # next expected sequence number (32-bit)
        self.pos = 0  # stream offset of next_seq (bytes delivered or skipped so far)
        self.pending: list[tuple[int, int, float, bytes]] = []  # (pos, arrival, ts, data)
        self.pending_bytes = 0
        self.fin_pos: int | None = None
        self.ended = False
        self.hole_acked = False  # the peer acknowledged bytes we never saw
        self.acked_pos = 0  # stream offset the peer acknowledged (valid while hole_acked)
        self.stale = 0


class _Connection:
    __slots__ = ("arrival", "client", "closing", "key", "last_ts", "server", "sink", "syn_seen")

    def __init__(self, key: ConnectionKey, sink: StreamSink, syn_seen: bool) -> None:
        self.key = key
        self.sink = sink
        self.client = _Direction()
        self.server = _Direction()
        self.syn_seen = syn_seen
        self.last_ts = 0.0
        self.arrival = 0
        self.closing = False


class TcpReassembler:
    """Feed segments in capture order with :meth:`feed`; call :meth:`finish` at capture end.

    ``sink_factory(key, ts, syn_seen)`` is called for each new connection; ``syn_seen`` is False
    when the capture started mid-connection.
    """

    def __init__(self, server_ports: Collection[int], sink_factory: SinkFactory) -> None:
        self.server_ports = frozenset(server_ports)
        self.sink_factory = sink_factory
        self.stats = ReassemblyStats()
        self._connections: dict[ConnectionKey, _Connection] = {}
        self._closed: OrderedDict[ConnectionKey, None] = OrderedDict()

    @property
    def open_connections(self) -> int:
        """Connections currently holding state."""
        return len(self._connections)

    def feed(self, seg: TcpSegment) -> None:
        """Process one segment."""
        if seg.dport in self.server_ports:
            key = (seg.src, seg.sport, seg.dst, seg.dport)
            from_client = True
        elif seg.sport in self.server_ports:
            key = (seg.dst, seg.dport, seg.src, seg.sport)
            from_client = False
        else:
            return
        flags = seg.flags
        conn = self._connections.get(key)
        if flags & SYN and not flags & ACK and from_client:
            if conn is not None:
                if conn.client.next_seq == (seg.seq + 1) & MASK:
                    return  # retransmitted SYN
                self._close(conn, seg.ts, "capture_end")  # port reuse: the old one ended unseen
            self._closed.pop(key, None)
            conn = self._open(key, seg.ts, True)
            conn.client.next_seq = (seg.seq + 1) & MASK
            return
        if conn is None:
            if not seg.payload or key in self._closed:
                return  # a stray ACK/FIN/RST or a late segment of a closed connection
            conn = self._open(key, seg.ts, False)
        conn.last_ts = seg.ts
        mine, peer = (conn.client, conn.server) if from_client else (conn.server, conn.client)
        if flags & SYN:  # SYN-ACK from the server
            if mine.next_seq is None:
                mine.next_seq = (seg.seq + 1) & MASK
            return
        if flags & ACK and peer.next_seq is not None and not peer.ended:
            self._note_ack(conn, peer, not from_client, seg.ack, seg.ts)
        if seg.payload and peer.hole_acked:
            # this side already answers bytes of the peer that the capture lacks: declare that hole
            # first, so the consumer sees events in causal order (request gap before the response)
            self._skip_hole(conn, peer, not from_client, seg.ts)
        if seg.payload or flags & FIN:
            self._data(conn, mine, from_client, seg)
        if conn.client.hole_acked or conn.server.hole_acked:
            for direction, dir_from_client in ((conn.client, True), (conn.server, False)):
                if direction.hole_acked:
                    direction.stale += 1
                    if direction.stale >= HOLE_PATIENCE:
                        self._skip_hole(conn, direction, dir_from_client, seg.ts)
        if flags & RST:
            self._close(conn, seg.ts, "rst", reset_by_client=from_client)
        elif conn.client.ended and conn.server.ended:
            self._close(conn, seg.ts, "fin")

    def feed_all(self, segments: Iterable[TcpSegment]) -> None:
        """Feed every segment, then :meth:`finish`."""
        feed = self.feed
        for seg in segments:
            feed(seg)
        self.finish()

    def finish(self) -> None:
        """Capture ended: flush buffered data (holes become gaps) and close every connection."""
        for conn in list(self._connections.values()):
            self._close(conn, conn.last_ts, "capture_end")

    # -- internals --------------------------------------------------------------------------------

    def _open(self, key: ConnectionKey, ts: float, syn_seen: bool) -> _Connection:
        conn = _Connection(key, self.sink_factory(key, ts, syn_seen), syn_seen)
        conn.last_ts = ts
        self._connections[key] = conn
        self.stats.connections += 1
        return conn

    def _close(self, conn: _Connection, ts: float, reason: str, reset_by_client: bool = False) -> None:
        if conn.closing:
            return
        conn.closing = True
        for direction, from_client in ((conn.client, True), (conn.server, False)):
            while direction.pending or direction.hole_acked:
                self._skip_hole(conn, direction, from_client, ts)
        conn.sink.on_close(ts, reason, reset_by_client)
        self._connections.pop(conn.key, None)
        self._closed[conn.key] = None
        if len(self._closed) > _RECENTLY_CLOSED:
            self._closed.popitem(last=False)

    def _note_ack(self, conn: _Connection, direction: _Direction, from_client: bool, ack: int, ts: float) -> None:
        assert direction.next_seq is not None
        delta = (ack - direction.next_seq) & MASK
        if delta == 0 or delta & HALF:
            return
        if direction.fin_pos is not None and direction.pos + delta > direction.fin_pos:
            delta = direction.fin_pos - direction.pos  # the ACK covers the FIN's sequence number
            if delta <= 0:
                return
        if not direction.hole_acked:
            direction.hole_acked = True
            direction.stale = 0
            direction.acked_pos = direction.pos + delta
        elif direction.pos + delta > direction.acked_pos:
            direction.acked_pos = direction.pos + delta

    def _data(self, conn: _Connection, d: _Direction, from_client: bool, seg: TcpSegment) -> None:
        payload = seg.payload
        if d.next_seq is None:
            d.next_seq = seg.seq
        delta = (seg.seq - d.next_seq) & MASK
        if delta & HALF:
            delta -= 1 << 32
        size = len(payload)
        if seg.flags & FIN and not seg.truncated:
            fin_pos = d.pos + delta + size
            if d.fin_pos is None or fin_pos < d.fin_pos:
                d.fin_pos = fin_pos
        if delta < 0:
            if delta + size <= 0:
                if size:
                    self.stats.retransmitted_segments += 1
                self._maybe_end(conn, d, from_client, seg.ts)
                return
            self.stats.retransmitted_segments += 1  # partly old bytes: trimmed, first copy wins
            payload = payload[-delta:]
            delta = 0
        if delta == 0:
            if payload:
                self._deliver(conn, d, from_client, seg.ts, payload)
            if d.pending:
                self._drain(conn, d, from_client)
            if seg.truncated:
                # the snap length cut this payload: the rest of its bytes will never show up
                d.hole_acked = True
                d.stale = HOLE_PATIENCE
            self._maybe_end(conn, d, from_client, seg.ts)
            return
        if payload:
            self.stats.out_of_order_segments += 1
            conn.arrival += 1
            insort(d.pending, (d.pos + delta, conn.arrival, seg.ts, payload))
            d.pending_bytes += size
            if d.hole_acked and d.stale >= HOLE_PATIENCE:
                self._skip_hole(conn, d, from_client, seg.ts)
            while d.pending and (d.pending_bytes > MAX_PENDING_BYTES or len(d.pending) > MAX_PENDING_SEGMENTS):
                self._skip_hole(conn, d, from_client, seg.ts)

    def _deliver(self, conn: _Connection, d: _Direction, from_client: bool, ts: float, data: bytes) -> None:
        size = len(data)
        d.pos += size
        d.next_seq = (d.next_seq + size) & MASK  # type: ignore[operator]
        d.hole_acked = False
        conn.sink.on_data(from_client, ts, data)

    def _drain(self, conn: _Connection, d: _Direction, from_client: bool) -> None:
        pending = d.pending
        while pending and pending[0][0] <= d.pos:
            pos, _arrival, ts, data = pending.pop(0)
            d.pending_bytes -= len(data)
            overlap = d.pos - pos
            if overlap < len(data):
                self._deliver(conn, d, from_client, ts, data[overlap:] if overlap else data)
        if d.pending:
            return
        d.pending_bytes = 0

    def _skip_hole(self, conn: _Connection, d: _Direction, from_client: bool, ts: float) -> None:
        """Declare the bytes up to the first buffered segment (or up to what the peer ACKed) lost."""
        acked = d.acked_pos if d.hole_acked else 0
        d.hole_acked = False
        d.stale = 0
        if d.pending:
            first_pos, _arrival, first_ts = d.pending[0][:3]
        elif acked > d.pos:  # the lost bytes were the last ones sent so far
            first_pos, first_ts = acked, ts
        else:
            return
        size = first_pos - d.pos
        if size > 0:
            self.stats.gaps += 1
            self.stats.gap_bytes += size
            d.pos = first_pos
            d.next_seq = (d.next_seq + size) & MASK  # type: ignore[operator]
            conn.sink.on_gap(from_client, first_ts, size)
        self._drain(conn, d, from_client)
        self._maybe_end(conn, d, from_client, ts)

    def _maybe_end(self, conn: _Connection, d: _Direction, from_client: bool, ts: float) -> None:
        if not d.ended and d.fin_pos is not None and d.pos >= d.fin_pos:
            d.ended = True
            conn.sink.on_end(from_client, ts)
