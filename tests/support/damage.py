"""Rewrite or damage a real capture's packet list: other link-layer framings, lost, repeated, reordered or
overlapping segments, a capture window, a file cut mid-record. Each function returns new packets; nothing
is modified in place.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from tests.support.frames import (
    LINKTYPE_ETHERNET,
    LINKTYPE_LOOP,
    LINKTYPE_NULL,
    ipv4,
    ipv6,
    tcp,
    tcp_view,
)
from tests.support.pcapfile import Capture, Packet, read_pcap

AF_INET_BSD = 2
AF_INET6_DARWIN = 30
AF_INET6_OPENBSD = 24


def response_packets(capture: Capture, port: int, prompt: str) -> list[int]:
    """Indices of the server's data packets answering the request whose body holds ``prompt``
    (up to the one carrying ``"done":true``)."""
    views = [tcp_view(p.frame, capture.linktype) for p in capture.packets]
    needle = prompt.encode()
    start = next(i for i, v in enumerate(views) if v is not None and v.dport == port and needle in v.payload)
    client_port = views[start].sport  # type: ignore[union-attr]
    found = []
    for i in range(start + 1, len(views)):
        v = views[i]
        if v is None or v.sport != port or v.dport != client_port or not v.payload:
            continue
        found.append(i)
        if b'"done":true' in v.payload:
            return found
    raise ValueError("the response's end is not in the capture")


# -- link-layer rewrites -------------------------------------------------------------------------------


def _reframe(capture: Capture, linktype: int, header: struct.Struct, families: tuple[int, int]) -> Capture:
    if capture.linktype != LINKTYPE_ETHERNET:
        raise ValueError("only Linux lo (Ethernet) captures can be rewritten")
    packets = []
    for p in capture.packets:
        ip = p.frame[14:]
        family = families[0] if ip[0] >> 4 == 4 else families[1]
        packets.append(replace(p, frame=header.pack(family) + ip))
    return Capture(linktype, capture.snaplen, tuple(packets), capture.nanos)


def to_dlt_null(capture: Capture) -> Capture:
    """macOS ``lo0`` framing: DLT_NULL, a 4-byte address family in host (here little-endian) order."""
    return _reframe(capture, LINKTYPE_NULL, struct.Struct("<I"), (AF_INET_BSD, AF_INET6_DARWIN))


def to_dlt_loop(capture: Capture) -> Capture:
    """OpenBSD loopback framing: DLT_LOOP, the address family big-endian (OpenBSD's AF_INET6 is 24)."""
    return _reframe(capture, LINKTYPE_LOOP, struct.Struct(">I"), (AF_INET_BSD, AF_INET6_OPENBSD))


# --------------------------------------------------------------------------- crafted manipulations


def drop(packets: Sequence[Packet], index: int) -> list[Packet]:
    """The packet list without ``packets[index]`` (a segment the capture missed: a gap)."""
    return [p for i, p in enumerate(packets) if i != index]


def duplicate(packets: Sequence[Packet], index: int, at: int | None = None) -> list[Packet]:
    """``packets[index]`` seen twice: right after itself, or re-sent at position ``at`` (a retransmit,
    stamped with the time of the packet it follows)."""
    out = list(packets)
    copy = packets[index]
    if at is None:
        out.insert(index + 1, copy)
    else:
        out.insert(at, replace(copy, sec=out[at - 1].sec, frac=out[at - 1].frac))
    return out


def swap(packets: Sequence[Packet], i: int, j: int) -> list[Packet]:
    """Packets ``i`` and ``j`` in each other's place (each keeps its own timestamp): reordering."""
    out = list(packets)
    out[i], out[j] = out[j], out[i]
    return out


def split_overlapping(
    packets: Sequence[Packet], index: int, linktype: int = LINKTYPE_ETHERNET, overlap: int = 8
) -> list[Packet]:
    """Replace a data segment by two that overlap by ``overlap`` bytes (same timestamp, re-encoded)."""
    packet = packets[index]
    view = tcp_view(packet.frame, linktype)
    if view is None or len(view.payload) < 2 * overlap + 2:
        raise ValueError("packet has no payload to split")
    cut = len(view.payload) // 2
    pieces = [(0, view.payload[: cut + overlap]), (cut, view.payload[cut:])]
    link_head = packet.frame[: view.ip_offset]
    out = list(packets[:index])
    for offset, piece in pieces:
        l4 = tcp(view.sport, view.dport, view.seq + offset, view.ack, view.flags, piece)
        ip = ipv6(view.src, view.dst, l4) if ":" in view.src else ipv4(view.src, view.dst, l4)
        out.append(replace(packet, frame=link_head + ip))
    out.extend(packets[index + 1 :])
    return out


def window(packets: Sequence[Packet], first: int, last: int) -> list[Packet]:
    """Only ``packets[first:last]``: a capture that started late and ended early."""
    return list(packets[first:last])


def truncate_last_packet(path: Path, keep: int | None = None) -> None:
    """Cut the file inside its last packet's data (a tcpdump killed mid-write); ``keep`` bytes of it stay."""
    capture = read_pcap(path)
    last = capture.packets[-1]
    size = path.stat().st_size
    keep = len(last.frame) // 2 if keep is None else keep
    with path.open("r+b") as fh:
        fh.truncate(size - len(last.frame) + keep)


def add_vlan(capture: Capture, vlan: int = 42) -> Capture:
    """Every Ethernet frame with an 802.1Q tag inserted (a capture taken on a VLAN interface)."""
    if capture.linktype != LINKTYPE_ETHERNET:
        raise ValueError("only Ethernet captures can be tagged")
    tag = struct.pack("!HH", 0x8100, vlan)
    return replace(capture, packets=tuple(replace(p, frame=p.frame[:12] + tag + p.frame[12:]) for p in capture.packets))


def snap(capture: Capture, snaplen: int) -> Capture:
    """The capture as if taken with ``-s SNAPLEN``: frames cut, their wire length kept (``editcap -s``)."""
    cut = tuple(replace(p, frame=p.frame[:snaplen], orig_len=p.orig_len or len(p.frame)) for p in capture.packets)
    return replace(capture, snaplen=snaplen, packets=cut)
