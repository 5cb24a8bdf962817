"""The one pcap reader/writer for tests: classic pcap in and out (exact timestamps), pcapng out.

- :func:`read_pcap` reads tcpdump's classic pcap (µs or ns magic, either byte order) into a :class:`Capture`;
  :func:`write_pcap` writes one back byte for byte (little-endian, the capture's own resolution).
- :func:`pcap_bytes` / :func:`pcapng_bytes` build files from ``(timestamp, frame)`` lists for crafted tests.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

MAGIC_US = 0xA1B2C3D4
MAGIC_NS = 0xA1B23C4D
PCAPNG_MAGIC = b"\x0a\x0d\x0d\x0a"


@dataclass(frozen=True)
class Packet:
    """One pcap record: capture time (whole seconds, fraction in the file's unit) and the frame as captured."""

    sec: int
    frac: int
    frame: bytes
    orig_len: int | None = None  # the frame's length on the wire when the snap length cut it
    nanos: bool = False

    @property
    def ts(self) -> float:
        return self.sec + self.frac / (1e9 if self.nanos else 1e6)


@dataclass(frozen=True)
class Capture:
    """A classic pcap file in memory."""

    linktype: int
    snaplen: int
    packets: tuple[Packet, ...]
    nanos: bool = False


def read_pcap(path: Path) -> Capture:
    """Read a classic pcap file (µs or ns timestamps, either byte order)."""
    data = Path(path).read_bytes()
    for endian in "<>":
        magic = struct.unpack_from(endian + "I", data)[0]
        if magic in (MAGIC_US, MAGIC_NS):
            break
    else:
        raise ValueError(f"{path}: not a classic pcap file")
    nanos = magic == MAGIC_NS
    _m, _vmaj, _vmin, _zone, _sig, snaplen, linktype = struct.unpack_from(endian + "IHHiIII", data)
    packets = []
    pos = 24
    while pos + 16 <= len(data):
        sec, frac, incl, orig = struct.unpack_from(endian + "IIII", data, pos)
        frame = data[pos + 16 : pos + 16 + incl]
        packets.append(Packet(sec, frac, frame, None if orig == incl else orig, nanos))
        pos += 16 + incl
    return Capture(linktype, snaplen, tuple(packets), nanos)


def _header(linktype: int, snaplen: int, nanos: bool, endian: str = "<") -> bytes:
    return struct.pack(endian + "IHHiIII", MAGIC_NS if nanos else MAGIC_US, 2, 4, 0, 0, snaplen, linktype)


def _record(sec: int, frac: int, frame: bytes, orig_len: int, endian: str = "<") -> bytes:
    return struct.pack(endian + "IIII", sec, frac, len(frame), orig_len) + frame


def write_pcap(
    path: Path, capture: Capture, packets: Sequence[Packet] | None = None, linktype: int | None = None
) -> Path:
    """Write ``packets`` (default: the capture's) as a little-endian pcap with the capture's header fields."""
    chosen = capture.packets if packets is None else packets
    out = [_header(capture.linktype if linktype is None else linktype, capture.snaplen, capture.nanos)]
    for p in chosen:
        out.append(_record(p.sec, p.frac, p.frame, p.orig_len or len(p.frame)))
    Path(path).write_bytes(b"".join(out))
    return Path(path)


def pcap_bytes(
    packets: Sequence[tuple[float, bytes]],
    linktype: int = 1,
    *,
    nanos: bool = False,
    big_endian: bool = False,
    snaplen: int = 262144,
) -> bytes:
    """A classic pcap file; frames longer than ``snaplen`` are cut (orig_len keeps the real length)."""
    e = ">" if big_endian else "<"
    scale = 1_000_000_000 if nanos else 1_000_000
    out = [_header(linktype, snaplen, nanos, e)]
    for ts, frame in packets:
        ticks = round(ts * scale)
        out.append(_record(ticks // scale, ticks % scale, frame[:snaplen], len(frame), e))
    return b"".join(out)


def _block(e: str, btype: int, body: bytes) -> bytes:
    body += b"\x00" * (-len(body) % 4)
    length = len(body) + 12
    return struct.pack(e + "II", btype, length) + body + struct.pack(e + "I", length)


def pcapng_bytes(
    interfaces: Sequence[tuple[int, int | None]],
    packets: Sequence[tuple[int, float, bytes]],
    *,
    big_endian: bool = False,
    simple: bool = False,
    extra_blocks: bool = True,
) -> bytes:
    """A pcapng file: interfaces ``(linktype, if_tsresol byte or None)``, packets ``(iface, ts, frame)``.

    ``simple`` writes Simple Packet Blocks instead of EPBs; ``extra_blocks`` adds a name-resolution
    and a custom block that readers must skip.
    """
    e = ">" if big_endian else "<"
    out = [_block(e, 0x0A0D0D0A, struct.pack(e + "IHHq", 0x1A2B3C4D, 1, 0, -1))]
    divisors = []
    for linktype, resol in interfaces:
        options = b""
        if resol is not None:
            options += struct.pack(e + "HH", 9, 1) + bytes([resol]) + b"\x00\x00\x00"
        options += struct.pack(e + "HH", 0, 0)
        out.append(_block(e, 1, struct.pack(e + "HHI", linktype, 0, 0) + options))
        if resol is None:
            divisors.append(10**6)
        else:
            divisors.append(2 ** (resol & 0x7F) if resol & 0x80 else 10**resol)
    if extra_blocks:
        out.append(_block(e, 4, struct.pack(e + "HH", 0, 0)))  # empty name resolution block
        out.append(_block(e, 0x00000BAD, b"\x00\x00\x7f\xff custom"))
    for iface, ts, frame in packets:
        if simple:
            out.append(_block(e, 3, struct.pack(e + "I", len(frame)) + frame))
        else:
            ticks = round(ts * divisors[iface])
            head = struct.pack(e + "IIIII", iface, ticks >> 32, ticks & 0xFFFFFFFF, len(frame), len(frame))
            out.append(_block(e, 6, head + frame))
    return b"".join(out)


def capture_to_pcapng(capture: Capture) -> bytes:
    """The same packets as a pcapng file (one interface, the capture's resolution, exact timestamps):
    what ``editcap -F pcapng`` does."""
    e = "<"
    resol, scale = (9, 10**9) if capture.nanos else (6, 10**6)
    options = struct.pack(e + "HH", 9, 1) + bytes([resol]) + b"\x00\x00\x00" + struct.pack(e + "HH", 0, 0)
    out = [
        _block(e, 0x0A0D0D0A, struct.pack(e + "IHHq", 0x1A2B3C4D, 1, 0, -1)),
        _block(e, 1, struct.pack(e + "HHI", capture.linktype, 0, capture.snaplen) + options),
    ]
    for p in capture.packets:
        ticks = p.sec * scale + p.frac
        orig = p.orig_len or len(p.frame)
        head = struct.pack(e + "IIIII", 0, ticks >> 32, ticks & 0xFFFFFFFF, len(p.frame), orig)
        out.append(_block(e, 6, head + p.frame))
    return b"".join(out)
