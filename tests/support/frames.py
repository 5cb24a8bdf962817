"""Craft frames and TCP conversations for tests, and decode the TCP facts of a captured frame.

- Header builders: :func:`tcp`, :func:`ipv4`, :func:`ipv6`, :func:`ethernet`, :func:`null`, :func:`sll`, :func:`sll2`.
- :class:`Conversation` builds the ``TcpSegment`` list of one connection with real sequence numbers;
  :func:`frame_of` encodes a segment as a frame; :func:`chunked` frames an HTTP chunked body.
- :func:`tcp_view` decodes IPv4/IPv6 + TCP of a frame (Ethernet, SLL2, NULL/LOOP framing).
"""

from __future__ import annotations

import socket
import struct
from dataclasses import dataclass

from analyzer.pcap.segments import ACK, FIN, PSH, RST, SYN, TcpSegment

LINKTYPE_NULL = 0
LINKTYPE_ETHERNET = 1
LINKTYPE_LOOP = 108
LINKTYPE_LINUX_SLL = 113
LINKTYPE_LINUX_SLL2 = 276

# -- headers ---------------------------------------------------------------------------------------


def tcp(sport: int, dport: int, seq: int, ack: int, flags: int, payload: bytes = b"", options: bytes = b"") -> bytes:
    """A TCP header (checksum 0) followed by ``payload``."""
    options += b"\x00" * (-len(options) % 4)
    doff = (20 + len(options)) // 4
    head = struct.pack("!HHIIBBHHH", sport, dport, seq & 0xFFFFFFFF, ack & 0xFFFFFFFF, doff << 4, flags, 65535, 0, 0)
    return head + options + payload


def ipv4(src: str, dst: str, l4: bytes, proto: int = 6, frag: int = 0, options: bytes = b"") -> bytes:
    """An IPv4 header (optionally with options, fragment field) followed by ``l4``."""
    options += b"\x00" * (-len(options) % 4)
    ihl = (20 + len(options)) // 4
    head = struct.pack(
        "!BBHHHBBH4s4s",
        0x40 | ihl,
        0,
        20 + len(options) + len(l4),
        1,
        frag,
        64,
        proto,
        0,
        socket.inet_aton(src),
        socket.inet_aton(dst),
    )
    return head + options + l4


def ipv6(src: str, dst: str, l4: bytes, ext: list[tuple[int, bytes]] | None = None) -> bytes:
    """An IPv6 header, extension headers ``(type, body)`` in order, then TCP ``l4``."""
    chain = b""
    types = [t for t, _ in ext or []]
    next_types = [*types[1:], 6] if types else []
    for (_t, body), nxt in zip(ext or [], next_types, strict=True):
        if _t == 44:
            chain += bytes([nxt, 0]) + body  # fragment header: 6 bytes of body
        else:
            body += b"\x00" * (-(len(body) + 2) % 8)
            chain += bytes([nxt, (len(body) + 2) // 8 - 1]) + body
    first = types[0] if types else 6
    head = struct.pack(
        "!IHBB16s16s",
        6 << 28,
        len(chain) + len(l4),
        first,
        64,
        socket.inet_pton(socket.AF_INET6, src),
        socket.inet_pton(socket.AF_INET6, dst),
    )
    return head + chain + l4


def ethernet(ip: bytes, vlan: int | None = None, pad_to: int = 0) -> bytes:
    """An Ethernet II frame (zero MACs, like Linux ``lo``) with optional 802.1Q tag and padding."""
    etype = 0x86DD if ip[0] >> 4 == 6 else 0x0800
    head = b"\x00" * 12
    if vlan is not None:
        head += struct.pack("!HH", 0x8100, vlan)
    frame = head + struct.pack("!H", etype) + ip
    return frame + b"\x00" * max(0, pad_to - len(frame))


def null(ip: bytes, big_endian: bool = False, loop: bool = False) -> bytes:
    """DLT_NULL (host order, or big-endian when ``big_endian``) / DLT_LOOP (always big-endian) header."""
    family = 2 if ip[0] >> 4 == 4 else 30
    return struct.pack(">I" if (big_endian or loop) else "<I", family) + ip


def sll(ip: bytes) -> bytes:
    """Linux cooked v1 header."""
    proto = 0x86DD if ip[0] >> 4 == 6 else 0x0800
    return struct.pack("!HHH8sH", 0, 772, 6, b"\x00" * 8, proto) + ip


def sll2(ip: bytes) -> bytes:
    """Linux cooked v2 header."""
    proto = 0x86DD if ip[0] >> 4 == 6 else 0x0800
    return struct.pack("!HHIHBB8s", proto, 0, 1, 772, 0, 6, b"\x00" * 8) + ip


# -- conversations ---------------------------------------------------------------------------------


class Conversation:
    """Builds the TcpSegments of one client↔server connection, with real sequence numbers."""

    def __init__(
        self,
        client: str = "10.0.0.1",
        cport: int = 50000,
        server: str = "10.0.0.2",
        sport: int = 11434,
        cisn: int = 1000,
        sisn: int = 5000,
        ts: float = 1000.0,
    ) -> None:
        self.client, self.cport, self.server, self.sport = client, cport, server, sport
        self.cseq, self.sseq = cisn, sisn
        self.ts = ts

    def _tick(self) -> float:
        self.ts += 0.001
        return self.ts

    def c(self, payload: bytes = b"", flags: int = ACK | PSH, seq: int | None = None) -> TcpSegment:
        """A client→server segment (advances the client's sequence unless ``seq`` is given)."""
        s = self.cseq if seq is None else seq
        seg = TcpSegment(
            self._tick(),
            self.client,
            self.cport,
            self.server,
            self.sport,
            s & 0xFFFFFFFF,
            self.sseq & 0xFFFFFFFF,
            flags,
            payload,
        )
        if seq is None:
            self.cseq += len(payload) + (1 if flags & (SYN | FIN) else 0)
        return seg

    def s(self, payload: bytes = b"", flags: int = ACK | PSH, seq: int | None = None) -> TcpSegment:
        """A server→client segment."""
        s = self.sseq if seq is None else seq
        seg = TcpSegment(
            self._tick(),
            self.server,
            self.sport,
            self.client,
            self.cport,
            s & 0xFFFFFFFF,
            self.cseq & 0xFFFFFFFF,
            flags,
            payload,
        )
        if seq is None:
            self.sseq += len(payload) + (1 if flags & (SYN | FIN) else 0)
        return seg

    def handshake(self) -> list[TcpSegment]:
        """SYN, SYN-ACK, ACK."""
        return [self.c(flags=SYN), self.s(flags=SYN | ACK), self.c(flags=ACK)]

    def close(self) -> list[TcpSegment]:
        """FIN from each side and the last ACK."""
        return [self.c(flags=FIN | ACK), self.s(flags=FIN | ACK), self.c(flags=ACK)]

    def reset(self) -> TcpSegment:
        """RST from the client."""
        return self.c(flags=RST | ACK)


def frame_of(seg: TcpSegment, link: str = "eth") -> bytes:
    """Encode a TcpSegment as a full frame (IPv4 or IPv6 by address)."""
    l4 = tcp(seg.sport, seg.dport, seg.seq, seg.ack, seg.flags, seg.payload)
    ip = ipv6(seg.src, seg.dst, l4) if ":" in seg.src else ipv4(seg.src, seg.dst, l4)
    if link == "eth":
        return ethernet(ip)
    if link == "sll2":
        return sll2(ip)
    if link == "raw":
        return ip
    raise ValueError(link)


def chunked(*parts: bytes) -> bytes:
    """A chunked body of ``parts`` plus the last chunk."""
    return b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in parts) + b"0\r\n\r\n"


# -- decoding ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TcpView:
    """The TCP facts of one frame that the manipulations need."""

    src: str
    sport: int
    dst: str
    dport: int
    seq: int
    ack: int
    flags: int
    payload: bytes
    ip_offset: int  # where the IP header starts in the frame


def _ip_offset(frame: bytes, linktype: int) -> int:
    if linktype == LINKTYPE_ETHERNET:
        return 14
    if linktype == LINKTYPE_LINUX_SLL2:
        return 20
    if linktype == LINKTYPE_LINUX_SLL:
        return 16
    if linktype in (LINKTYPE_NULL, LINKTYPE_LOOP):
        return 4
    raise ValueError(f"link type {linktype} not handled by the test helpers")


def tcp_view(frame: bytes, linktype: int = LINKTYPE_ETHERNET) -> TcpView | None:
    """Decode IPv4/IPv6 + TCP (no extension headers: loopback traffic has none); None for anything else."""
    off = _ip_offset(frame, linktype)
    if len(frame) < off + 20:
        return None
    version = frame[off] >> 4
    if version == 4:
        ihl = (frame[off] & 0x0F) * 4
        if frame[off + 9] != 6:
            return None
        total = struct.unpack_from("!H", frame, off + 2)[0]
        src = socket.inet_ntop(socket.AF_INET, frame[off + 12 : off + 16])
        dst = socket.inet_ntop(socket.AF_INET, frame[off + 16 : off + 20])
        l4, end = off + ihl, off + total
    elif version == 6:
        if frame[off + 6] != 6:
            return None
        plen = struct.unpack_from("!H", frame, off + 4)[0]
        src = socket.inet_ntop(socket.AF_INET6, frame[off + 8 : off + 24])
        dst = socket.inet_ntop(socket.AF_INET6, frame[off + 24 : off + 40])
        l4, end = off + 40, off + 40 + plen
    else:
        return None
    sport, dport, seq, ack, doff, flags = struct.unpack_from("!HHIIBB", frame, l4)
    payload = frame[l4 + (doff >> 4) * 4 : end]
    return TcpView(src, sport, dst, dport, seq, ack, flags, payload, off)
