"""Stream packets out of pcap and pcapng files without loading them.

:func:`iter_packets` yields ``(timestamp, linktype, frame)`` per packet: the capture time in POSIX
seconds, the packet's link-layer type (per interface in pcapng) and the captured frame bytes as a
``memoryview`` into a read buffer (valid as long as it is referenced). A last packet cut short by a
killed tcpdump is not an error: reading stops and a warning is reported.
"""

from __future__ import annotations

import os
import stat
import struct
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass
from typing import BinaryIO

from analyzer.pcap.errors import (
    CorruptCaptureError,
    EmptyCaptureError,
    NotACaptureError,
    NotARegularFileError,
    UnsupportedLinkTypeError,
)

Packet = tuple[float, int, memoryview]
WarningSink = Callable[[str], None]

# Names of the link-layer types one meets in practice (tcpdump's DLT_/LINKTYPE_ names).
LINKTYPE_NAMES: dict[int, str] = {
    0: "NULL (BSD loopback)",
    1: "EN10MB (Ethernet)",
    6: "IEEE802 (Token Ring)",
    8: "SLIP",
    9: "PPP",
    10: "FDDI",
    12: "RAW (IP)",
    14: "RAW (IP, OpenBSD)",
    50: "PPP_HDLC",
    51: "PPP_ETHER (PPPoE)",
    101: "RAW (IP)",
    104: "C_HDLC (Cisco HDLC)",
    105: "IEEE802_11 (Wi-Fi)",
    108: "LOOP (OpenBSD loopback)",
    113: "LINUX_SLL (Linux cooked v1)",
    117: "PFLOG",
    119: "IEEE802_11_PRISM",
    127: "IEEE802_11_RADIOTAP",
    138: "APPLE_IP_OVER_IEEE1394",
    192: "PPI",
    195: "IEEE802_15_4",
    197: "ERF",
    201: "BLUETOOTH_HCI_H4_WITH_PHDR",
    220: "USB_LINUX_MMAPPED",
    228: "IPV4",
    229: "IPV6",
    239: "NFLOG",
    249: "USBPCAP",
    252: "WIRESHARK_UPPER_PDU",
    253: "NETLINK",
    276: "LINUX_SLL2 (Linux cooked v2)",
}

PCAP_MAGIC_US = 0xA1B2C3D4
PCAP_MAGIC_NS = 0xA1B23C4D
PCAPNG_SHB = 0x0A0D0D0A
PCAPNG_BOM = 0x1A2B3C4D

_BLOCK_IDB = 1
_BLOCK_OPB = 2  # obsolete packet block
_BLOCK_SPB = 3
_BLOCK_EPB = 6

_OPT_IF_TSRESOL = 9
_OPT_IF_TSOFFSET = 14

_CHUNK = 1 << 20
# A single record longer than this is corruption, not a jumbo frame.
_MAX_RECORD = 64 << 20


def linktype_name(linktype: int) -> str:
    """Human-readable name of a link-layer type number."""
    return LINKTYPE_NAMES.get(linktype, "unknown")


class _Buffer:
    """A sliding read buffer over a binary file; refilled only when a record straddles its end."""

    __slots__ = ("data", "file", "pos", "view")

    def __init__(self, file: BinaryIO, initial: bytes) -> None:
        self.file = file
        self.data = initial
        self.view = memoryview(initial)
        self.pos = 0

    def ensure(self, need: int) -> bool:
        """Make at least ``need`` bytes available from ``pos``; False if the file ends first."""
        have = len(self.data) - self.pos
        if have >= need:
            return True
        parts = [self.data[self.pos :]]
        while have < need:
            more = self.file.read(max(_CHUNK, need - have))
            if not more:
                break
            parts.append(more)
            have += len(more)
        self.data = b"".join(parts)
        self.view = memoryview(self.data)
        self.pos = 0
        return have >= need

    def available(self) -> int:
        return len(self.data) - self.pos


def _seconds(ticks: int, divisor: float) -> float:
    """``ticks / divisor`` as whole seconds plus the fraction: the same float the classic-pcap path and the tshark
    engine compute (ns ticks since 1970 exceed a float's 53 bits; dividing them whole rounds twice)."""
    whole, frac = divmod(ticks, int(divisor))
    return whole + frac / divisor


@dataclass(slots=True)
class _Interface:
    """One pcapng interface description block, as packets need it."""

    linktype: int
    divisor: float  # timestamp units per second (if_tsresol)
    offset: float  # seconds added to every timestamp (if_tsoffset)
    snaplen: int  # 0 = no limit
    checked: bool = False  # link type checked against the supported ones (done at its first packet)


class CaptureReader:
    """Iterate the packets of one pcap or pcapng file; collects non-fatal ``warnings``.

    ``supported_linktypes``: when given, the first packet of any other link type raises
    :class:`UnsupportedLinkTypeError` (interfaces without packets are fine). ``on_warning`` is
    called with each warning text as it happens (they are also appended to ``warnings``).
    """

    def __init__(
        self,
        path: str,
        *,
        supported_linktypes: Collection[int] | None = None,
        on_warning: WarningSink | None = None,
    ) -> None:
        self.path = str(path)
        self.supported = frozenset(supported_linktypes) if supported_linktypes is not None else None
        self.on_warning = on_warning
        self.warnings: list[str] = []
        self.format = ""  # "pcap" | "pcapng" once iteration started

    def _warn(self, text: str) -> None:
        message = f"{self.path}: {text}"
        self.warnings.append(message)
        if self.on_warning is not None:
            self.on_warning(message)

    def _truncated(self, have: int, need: int) -> None:
        self._warn(f"last packet truncated ({max(have, 0)} of {need} bytes); analyzed the intact part")

    def _check_linktype(self, linktype: int) -> None:
        if self.supported is not None and linktype not in self.supported:
            raise UnsupportedLinkTypeError(self.path, linktype, linktype_name(linktype))

    def __iter__(self) -> Iterator[Packet]:
        # O_NONBLOCK: opening a FIFO without a writer must not wait for one; only regular files are read.
        fd = os.open(self.path, os.O_RDONLY | os.O_NONBLOCK)
        try:
            mode = os.fstat(fd).st_mode
        except OSError:
            os.close(fd)
            raise
        if not stat.S_ISREG(mode):
            os.close(fd)
            raise NotARegularFileError(self.path)
        with open(fd, "rb") as file:
            head = file.read(_CHUNK)
            if not head:
                raise EmptyCaptureError(self.path)
            if len(head) < 4:
                raise NotACaptureError(self.path, head)
            buf = _Buffer(file, head)
            magic_le = struct.unpack_from("<I", head)[0]
            if magic_le == PCAPNG_SHB:
                self.format = "pcapng"
                yield from self._iter_pcapng(buf)
            elif magic_le in (PCAP_MAGIC_US, PCAP_MAGIC_NS) or struct.unpack_from(">I", head)[0] in (
                PCAP_MAGIC_US,
                PCAP_MAGIC_NS,
            ):
                self.format = "pcap"
                yield from self._iter_pcap(buf)
            else:
                raise NotACaptureError(self.path, head)

    # -- pcap -------------------------------------------------------------------------------------

    def _iter_pcap(self, buf: _Buffer) -> Iterator[Packet]:
        if not buf.ensure(24):
            raise CorruptCaptureError(self.path, f"pcap file header cut short ({buf.available()} of 24 bytes)")
        endian = "<" if struct.unpack_from("<I", buf.data)[0] in (PCAP_MAGIC_US, PCAP_MAGIC_NS) else ">"
        magic, _vmaj, _vmin, _zone, _sigfigs, _snaplen, network = struct.unpack_from(endian + "IHHiIII", buf.data)
        divisor = 1e9 if magic == PCAP_MAGIC_NS else 1e6
        linktype = network & 0xFFFF  # upper bits carry FCS information
        self._check_linktype(linktype)
        unpack_record = struct.Struct(endian + "IIII").unpack_from
        buf.pos = 24
        while True:
            pos = buf.pos
            data = buf.data
            if len(data) - pos < 16:
                if not buf.ensure(16):
                    if buf.available():
                        self._truncated(buf.available(), 16)
                    return
                pos, data = buf.pos, buf.data
            sec, frac, incl, _orig = unpack_record(data, pos)
            if incl > _MAX_RECORD:
                raise CorruptCaptureError(
                    self.path, f"packet record at byte {pos} claims {incl} bytes: file is corrupt"
                )
            start = pos + 16
            stop = start + incl
            if stop > len(data):
                if not buf.ensure(16 + incl):
                    self._truncated(buf.available() - 16, incl)
                    return
                pos, data = buf.pos, buf.data
                start = pos + 16
                stop = start + incl
            buf.pos = stop
            yield sec + frac / divisor, linktype, buf.view[start:stop]

    # -- pcapng -----------------------------------------------------------------------------------

    def _iter_pcapng(self, buf: _Buffer) -> Iterator[Packet]:
        endian = "<"
        block_head = struct.Struct("<II")
        epb_head = struct.Struct("<IIIII")
        interfaces: list[_Interface] = []
        last_ts = 0.0
        while True:
            if not buf.ensure(8):
                if buf.available():
                    self._truncated(buf.available(), 8)
                return
            pos = buf.pos
            data = buf.data
            btype, blen = block_head.unpack_from(data, pos)
            if btype == PCAPNG_SHB:
                if not buf.ensure(12):
                    self._truncated(buf.available(), 12)
                    return
                pos, data = buf.pos, buf.data
                bom_le = struct.unpack_from("<I", data, pos + 8)[0]
                if bom_le == PCAPNG_BOM:
                    endian = "<"
                elif struct.unpack_from(">I", data, pos + 8)[0] == PCAPNG_BOM:
                    endian = ">"
                else:
                    raise CorruptCaptureError(self.path, f"pcapng section header at byte {pos} has no byte-order magic")
                block_head = struct.Struct(endian + "II")
                epb_head = struct.Struct(endian + "IIIII")
                blen = block_head.unpack_from(data, pos)[1]
                interfaces = []
            if blen < 12 or blen % 4 or blen > _MAX_RECORD:
                raise CorruptCaptureError(self.path, f"pcapng block at byte {pos} has invalid length {blen}")
            if len(data) - pos < blen:
                if not buf.ensure(blen):
                    have = buf.available()
                    if btype == _BLOCK_EPB and have >= 28:
                        caplen = epb_head.unpack_from(buf.data, buf.pos + 8)[3]
                        self._truncated(have - 28, caplen)
                    else:
                        self._truncated(have, blen)
                    return
                pos, data = buf.pos, buf.data
            buf.pos = pos + blen
            if btype == _BLOCK_EPB:
                iface, ts_high, ts_low, caplen, _orig = epb_head.unpack_from(data, pos + 8)
                if caplen > blen - 32:
                    raise CorruptCaptureError(self.path, f"packet block at byte {pos} overruns its block")
                try:
                    info = interfaces[iface]
                except IndexError:
                    raise CorruptCaptureError(
                        self.path, f"packet at byte {pos} refers to undeclared interface {iface}"
                    ) from None
                if not info.checked:
                    self._check_interface(info)
                last_ts = _seconds((ts_high << 32) | ts_low, info.divisor) + info.offset
                yield last_ts, info.linktype, buf.view[pos + 28 : pos + 28 + caplen]
            elif btype == _BLOCK_IDB:
                interfaces.append(self._parse_idb(data, pos, blen, endian))
            elif btype == _BLOCK_SPB:
                if not interfaces:
                    raise CorruptCaptureError(self.path, f"simple packet block at byte {pos} before any interface")
                info = interfaces[0]
                if not info.checked:
                    self._check_interface(info)
                orig = struct.unpack_from(endian + "I", data, pos + 8)[0]
                caplen = min(orig, blen - 16, info.snaplen or orig)
                yield last_ts, info.linktype, buf.view[pos + 12 : pos + 12 + caplen]
            elif btype == _BLOCK_OPB:
                iface, _drops, ts_high, ts_low, caplen, _orig = struct.unpack_from(endian + "HHIIII", data, pos + 8)
                if iface < len(interfaces) and caplen <= blen - 32:
                    info = interfaces[iface]
                    if not info.checked:
                        self._check_interface(info)
                    last_ts = _seconds((ts_high << 32) | ts_low, info.divisor) + info.offset
                    yield last_ts, info.linktype, buf.view[pos + 28 : pos + 28 + caplen]
            # every other block type (NRB, ISB, DSB, custom, SHB itself) is skipped

    def _check_interface(self, info: _Interface) -> None:
        """Check an interface's link type when its first packet arrives (interfaces without packets are fine)."""
        self._check_linktype(info.linktype)
        info.checked = True

    def _parse_idb(self, data: bytes, pos: int, blen: int, endian: str) -> _Interface:
        linktype, _reserved, snaplen = struct.unpack_from(endian + "HHI", data, pos + 8)
        divisor = 1e6
        offset = 0.0
        opt = pos + 16
        end = pos + blen - 4
        unpack_opt = struct.Struct(endian + "HH").unpack_from
        while opt + 4 <= end:
            code, length = unpack_opt(data, opt)
            if code == 0:
                break
            value = opt + 4
            if code == _OPT_IF_TSRESOL and length >= 1:
                resol = data[value]
                divisor = float(2 ** (resol & 0x7F)) if resol & 0x80 else float(10**resol)
            elif code == _OPT_IF_TSOFFSET and length >= 8:
                offset = float(struct.unpack_from(endian + "q", data, value)[0])
            opt = value + ((length + 3) & ~3)
        return _Interface(linktype, divisor, offset, snaplen)


def iter_packets(
    path: str,
    *,
    supported_linktypes: Collection[int] | None = None,
    on_warning: WarningSink | None = None,
) -> Iterator[Packet]:
    """Stream ``(ts, linktype, frame)`` from a pcap or pcapng file.

    Raises :class:`~analyzer.pcap.errors.CaptureError` subclasses for empty, non-capture,
    corrupt or (with ``supported_linktypes``) unsupported files. A cut-short last packet ends the
    iteration and calls ``on_warning("FILE: last packet truncated (N of M bytes); ...")``.
    """
    return iter(CaptureReader(path, supported_linktypes=supported_linktypes, on_warning=on_warning))


def first_packet_time(path: str) -> float | None:
    """Capture time of the first packet (None if the file has no packets); reads only the start."""
    for ts, _linktype, _frame in CaptureReader(path):
        return ts
    return None
