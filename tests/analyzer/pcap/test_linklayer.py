"""Tests for analyzer.pcap.linklayer: link types → IP → TCP segments."""

from __future__ import annotations

from pathlib import Path

import pytest

from analyzer.pcap.captures import iter_packets
from analyzer.pcap.linklayer import decode_frame, segments_from_packets
from analyzer.pcap.segments import ACK, PSH
from tests.support import frames as g
from tests.support.pcapfile import pcapng_bytes

PAYLOAD = b'{"model":"m","response":"hi","done":false}\n'
V4 = g.ipv4("127.0.0.1", "127.0.0.2", g.tcp(11434, 50000, 7, 9, ACK | PSH, PAYLOAD))
V6 = g.ipv6("::1", "fe80::2", g.tcp(11434, 50000, 7, 9, ACK | PSH, PAYLOAD))


def decode(linktype: int, frame: bytes, ports: set[int] | None = None):
    return decode_frame(1.5, linktype, memoryview(frame), ports)


@pytest.mark.parametrize(
    ("linktype", "frame"),
    [
        (1, g.ethernet(V4)),
        (1, g.ethernet(V4, vlan=42)),
        (0, g.null(V4)),
        (0, g.null(V4, big_endian=True)),
        (108, g.null(V4, loop=True)),
        (113, g.sll(V4)),
        (276, g.sll2(V4)),
        (101, V4),
        (12, V4),
        (14, V4),
        (228, V4),
    ],
)
def test_ipv4_over_each_link_type(linktype: int, frame: bytes) -> None:
    seg = decode(linktype, frame)
    assert seg is not None
    assert (seg.src, seg.sport, seg.dst, seg.dport) == ("127.0.0.1", 11434, "127.0.0.2", 50000)
    assert (seg.seq, seg.ack, seg.flags, seg.payload, seg.truncated) == (7, 9, ACK | PSH, PAYLOAD, False)
    assert seg.ts == 1.5


@pytest.mark.parametrize(
    ("linktype", "frame"),
    [
        (1, g.ethernet(V6)),
        (1, g.ethernet(V6, vlan=7)),
        (0, g.null(V6)),
        (108, g.null(V6, loop=True)),
        (113, g.sll(V6)),
        (276, g.sll2(V6)),
        (101, V6),
        (229, V6),
    ],
)
def test_ipv6_over_each_link_type(linktype: int, frame: bytes) -> None:
    seg = decode(linktype, frame)
    assert seg is not None
    assert (seg.src, seg.dst, seg.payload) == ("::1", "fe80::2", PAYLOAD)


@pytest.mark.parametrize("family", [24, 28, 30])
def test_null_ipv6_families(family: int) -> None:
    frame = family.to_bytes(4, "little") + V6
    seg = decode(0, frame)
    assert seg is not None and seg.payload == PAYLOAD


def test_ipv6_extension_headers() -> None:
    l4 = g.tcp(50000, 11434, 1, 2, ACK, b"GET / HTTP/1.1\r\n\r\n")
    ip = g.ipv6(
        "::1",
        "::1",
        l4,
        ext=[(0, b"\x00" * 6), (43, b"\x00" * 6), (60, b"\x01\x02" + b"\x00" * 4), (44, b"\x00\x00\x00\x00\x00\x01")],
    )
    seg = decode(1, g.ethernet(ip))
    assert seg is not None and seg.payload == b"GET / HTTP/1.1\r\n\r\n" and not seg.truncated


def test_ipv6_non_first_fragment_ignored_first_fragment_truncated() -> None:
    l4 = g.tcp(50000, 11434, 1, 2, ACK, b"abc")
    later = g.ipv6("::1", "::1", l4, ext=[(44, b"\x00\x08\x00\x00\x00\x01")])
    assert decode(101, later) is None
    first = g.ipv6("::1", "::1", l4, ext=[(44, b"\x00\x01\x00\x00\x00\x01")])
    seg = decode(101, first)
    assert seg is not None and seg.truncated


def test_ipv4_options_and_fragments() -> None:
    l4 = g.tcp(50000, 11434, 1, 2, ACK, b"body")
    seg = decode(101, g.ipv4("10.0.0.1", "10.0.0.2", l4, options=b"\x01\x01\x01\x01\x94\x04\x00\x00"))
    assert seg is not None and seg.payload == b"body"
    assert decode(101, g.ipv4("10.0.0.1", "10.0.0.2", l4, frag=10)) is None  # non-first fragment
    first = decode(101, g.ipv4("10.0.0.1", "10.0.0.2", l4, frag=0x2000))
    assert first is not None and first.truncated


def test_tcp_options_skipped() -> None:
    l4 = g.tcp(50000, 11434, 1, 2, ACK, b"xyz", options=b"\x01\x01\x08\x0a" + b"\x00" * 8)
    seg = decode(101, g.ipv4("10.0.0.1", "10.0.0.2", l4))
    assert seg is not None and seg.payload == b"xyz"


def test_ethernet_padding_is_not_payload() -> None:
    ip = g.ipv4("10.0.0.1", "10.0.0.2", g.tcp(50000, 11434, 1, 2, ACK))
    seg = decode(1, g.ethernet(ip, pad_to=60))
    assert seg is not None and seg.payload == b"" and not seg.truncated


def test_snaplen_cut_marks_truncated() -> None:
    frame = g.ethernet(V4)
    seg = decode(1, frame[:-10])
    assert seg is not None and seg.truncated and seg.payload == PAYLOAD[:-10]


def test_non_tcp_and_non_ip_ignored() -> None:
    assert decode(1, g.ethernet(g.ipv4("1.1.1.1", "2.2.2.2", b"\x00" * 8, proto=17))) is None
    assert decode(1, b"\x00" * 12 + b"\x08\x06" + b"\x00" * 28) is None  # ARP
    assert decode(1, b"\x00" * 5) is None
    assert decode(0, (99).to_bytes(4, "little") + V4) is None


def test_port_filter() -> None:
    assert decode(1, g.ethernet(V4), {11434}) is not None
    assert decode(1, g.ethernet(V4), {50000}) is not None
    assert decode(1, g.ethernet(V4), {8080}) is None


def test_segments_from_capture_file(tmp_path: Path) -> None:
    other = g.ipv4("10.0.0.1", "10.0.0.2", g.tcp(1234, 80, 1, 1, ACK, b"other"))
    path = tmp_path / "c.pcapng"
    path.write_bytes(
        pcapng_bytes(
            [(1, None), (276, 9)], [(0, 10.0, g.ethernet(V4)), (1, 11.0, g.sll2(V6)), (0, 12.0, g.ethernet(other))]
        )
    )
    segs = list(segments_from_packets(iter_packets(str(path)), {11434}))
    assert [(s.ts, s.src) for s in segs] == [(10.0, "127.0.0.1"), (11.0, "::1")]
