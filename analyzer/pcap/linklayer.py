"""Decode captured frames (link layer → IPv4/IPv6 → TCP) into :class:`TcpSegment` objects.

Only TCP segments whose source or destination port is a server port become segments; the port
test happens before any address is formatted or payload copied, so unrelated traffic is cheap.
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Collection, Iterable, Iterator

from analyzer.pcap.segments import TcpSegment

LINKTYPE_NULL = 0
LINKTYPE_EN10MB = 1
LINKTYPE_RAW_12 = 12
LINKTYPE_RAW_14 = 14
LINKTYPE_RAW = 101
LINKTYPE_LOOP = 108
LINKTYPE_LINUX_SLL = 113
LINKTYPE_IPV4 = 228
LINKTYPE_IPV6 = 229
LINKTYPE_LINUX_SLL2 = 276

SUPPORTED_LINKTYPES: frozenset[int] = frozenset(
    {
        LINKTYPE_NULL,
        LINKTYPE_EN10MB,
        LINKTYPE_RAW_12,
        LINKTYPE_RAW_14,
        LINKTYPE_RAW,
        LINKTYPE_LOOP,
        LINKTYPE_LINUX_SLL,
        LINKTYPE_IPV4,
        LINKTYPE_IPV6,
        LINKTYPE_LINUX_SLL2,
    }
)

ETH_IPV4 = 0x0800
ETH_IPV6 = 0x86DD
_ETH_VLAN = (0x8100, 0x88A8, 0x9100)
_AF_INET6 = (24, 28, 30)  # BSD loopback AF_INET6 values (NetBSD/OpenBSD, FreeBSD, macOS)

_IPPROTO_TCP = 6
_IPV6_EXT_SIMPLE = (0, 43, 60)  # hop-by-hop, routing, destination options
_IPV6_FRAGMENT = 44
_IPV6_AH = 51

_U16 = struct.Struct("!H")
_U32_LE = struct.Struct("<I")
_U32_BE = struct.Struct("!I")
_IPV4_HEAD = struct.Struct("!BxHxxHxB")  # ver/ihl, total length, flags/frag offset, protocol
_IPV6_HEAD = struct.Struct("!4xHB")  # payload length, next header
_TCP_HEAD = struct.Struct("!HHIIBB")  # sport, dport, seq, ack, data offset, flags

_addr_cache: dict[bytes, str] = {}


def _address(raw: memoryview) -> str:
    """Text form of a 4-byte (IPv4) or 16-byte (IPv6) address, cached: loopback captures repeat a few."""
    key = bytes(raw)
    text = _addr_cache.get(key)
    if text is None:
        if len(_addr_cache) > 65536:
            _addr_cache.clear()
        family = socket.AF_INET if len(key) == 4 else socket.AF_INET6
        text = _addr_cache[key] = socket.inet_ntop(family, key)
    return text


def _network_offset(linktype: int, frame: memoryview) -> tuple[int, int]:
    """(ethertype-like protocol, offset of the IP header) for one frame; protocol 0 = not IP."""
    n = len(frame)
    if linktype == LINKTYPE_EN10MB:
        if n < 14:
            return 0, 0
        off = 12
        etype = _U16.unpack_from(frame, off)[0]
        while etype in _ETH_VLAN and n >= off + 6:
            off += 4
            etype = _U16.unpack_from(frame, off)[0]
        return etype, off + 2
    if linktype == LINKTYPE_LINUX_SLL2:
        return (_U16.unpack_from(frame, 0)[0], 20) if n >= 20 else (0, 0)
    if linktype == LINKTYPE_LINUX_SLL:
        return (_U16.unpack_from(frame, 14)[0], 16) if n >= 16 else (0, 0)
    if linktype in (LINKTYPE_NULL, LINKTYPE_LOOP):
        if n < 4:
            return 0, 0
        family = (_U32_BE if linktype == LINKTYPE_LOOP else _U32_LE).unpack_from(frame, 0)[0]
        if family > 0xFFFF:  # written on a host of the other byte order
            family = struct.unpack("<I", struct.pack(">I", family))[0]
        if family == 2:
            return ETH_IPV4, 4
        if family in _AF_INET6:
            return ETH_IPV6, 4
        return 0, 0
    if linktype in (LINKTYPE_RAW, LINKTYPE_RAW_12, LINKTYPE_RAW_14, LINKTYPE_IPV4, LINKTYPE_IPV6):
        if n < 1:
            return 0, 0
        version = frame[0] >> 4
        return (ETH_IPV4 if version == 4 else ETH_IPV6 if version == 6 else 0), 0
    return 0, 0


def decode_frame(
    ts: float, linktype: int, frame: memoryview, server_ports: Collection[int] | None = None
) -> TcpSegment | None:
    """Decode one captured frame; a :class:`TcpSegment` if it is TCP (to/from a server port), else None.

    IP total length bounds the payload (Ethernet padding is dropped); a payload shorter than the IP
    length says (because the snap length cut it) ``truncated=True``. Non-first IP fragments are
    ignored; a first fragment yields its partial payload marked truncated.
    """
    if type(frame) is not memoryview:
        frame = memoryview(frame)
    etype, off = _network_offset(linktype, frame)
    n = len(frame)
    truncated = False
    if etype == ETH_IPV4:
        if n < off + 20:
            return None
        verihl, total, frag, proto = _IPV4_HEAD.unpack_from(frame, off)
        if proto != _IPPROTO_TCP or frag & 0x1FFF:
            return None
        if frag & 0x2000:  # more fragments: only the first part of the payload is here
            truncated = True
        tcp = off + (verihl & 0x0F) * 4
        end = off + total if total else n
        src_raw, dst_raw = frame[off + 12 : off + 16], frame[off + 16 : off + 20]
    elif etype == ETH_IPV6:
        if n < off + 40:
            return None
        plen, nxt = _IPV6_HEAD.unpack_from(frame, off)
        tcp = off + 40
        end = tcp + plen if plen else n
        while nxt != _IPPROTO_TCP:
            if n < tcp + 8:
                return None
            if nxt in _IPV6_EXT_SIMPLE:
                nxt, hlen = frame[tcp], (frame[tcp + 1] + 1) * 8
            elif nxt == _IPV6_FRAGMENT:
                fragword = _U16.unpack_from(frame, tcp + 2)[0]
                if fragword & 0xFFF8:
                    return None
                if fragword & 1:
                    truncated = True
                nxt, hlen = frame[tcp], 8
            elif nxt == _IPV6_AH:
                nxt, hlen = frame[tcp], (frame[tcp + 1] + 2) * 4
            else:
                return None
            tcp += hlen
        src_raw, dst_raw = frame[off + 8 : off + 24], frame[off + 24 : off + 40]
    else:
        return None
    if n < tcp + 20:
        return None
    sport, dport, seq, ack, doff, flags = _TCP_HEAD.unpack_from(frame, tcp)
    if server_ports is not None and sport not in server_ports and dport not in server_ports:
        return None
    start = tcp + (doff >> 4) * 4
    if end > n:
        end = n
        truncated = True
    payload = bytes(frame[start:end]) if end > start else b""
    return TcpSegment(ts, _address(src_raw), sport, _address(dst_raw), dport, seq, ack, flags, payload, truncated)


def segments_from_packets(
    packets: Iterable[tuple[float, int, memoryview]], server_ports: Collection[int] | None = None
) -> Iterator[TcpSegment]:
    """TCP segments from ``(ts, linktype, frame)`` packets, keeping only those to/from ``server_ports``
    (all TCP when None)."""
    ports = frozenset(server_ports) if server_ports is not None else None
    decode = decode_frame
    for ts, linktype, frame in packets:
        segment = decode(ts, linktype, frame, ports)
        if segment is not None:
            yield segment
