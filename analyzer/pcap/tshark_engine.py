"""The ``tshark`` packet engine: Wireshark's dissectors turn any capture into :class:`TcpSegment`\\ s.

Why tshark and not pyshark's packet objects: pyshark parses PDML/JSON into objects per packet, about
40x slower than tshark's own field export. So we run ``tshark -T fields`` ourselves and read its
stdout line by line (never the whole output at once); pyshark is used only to find the tshark binary
the way it does (``config.ini``, ``PATH``) and to read its version.

What this engine adds over the ``fast`` engine: every link type and tunnel Wireshark knows (VLAN,
GRE, IP-in-IP ...), and TLS decryption with a key log file (``SSLKEYLOGFILE`` format).

TCP reassembly is switched off in plain mode, so a response the capture cut short still yields
every segment that was captured. HTTP is always disabled in tshark: our own reassembler parses
HTTP, and it is the HTTP dissector that would otherwise ask TCP to reassemble bodies.
"""

from __future__ import annotations

import binascii
import functools
import os
import re
import shutil
import subprocess
from collections.abc import Callable, Collection, Iterator, Sequence
from pathlib import Path

from analyzer.pcap.errors import CaptureError, EmptyCaptureError
from analyzer.pcap.segments import SYN, TcpSegment

#: Ports decoded as TLS when a key log is given and the caller names none.
DEFAULT_TLS_PORTS: frozenset[int] = frozenset({443})

#: Oldest tshark with ``tcp.seq_raw`` / ``tcp.ack_raw`` and ``--disable-protocol``.
MIN_TSHARK_VERSION = (3, 0)

# Field order of the export; the parser below indexes by position.
_FIELDS = (
    "frame.time_epoch",  # 0
    "ip.src",  # 1
    "ip.dst",  # 2
    "ipv6.src",  # 3
    "ipv6.dst",  # 4
    "ip.proto",  # 5  only to tell which of IPv4/IPv6 is innermost in a tunnel
    "tcp.srcport",  # 6
    "tcp.dstport",  # 7
    "tcp.seq_raw",  # 8
    "tcp.ack_raw",  # 9
    "tcp.flags",  # 10
    "tcp.len",  # 11  payload length on the wire (from the IP header)
    "tcp.payload",  # 12 payload as captured
)
# With a key log: decrypted TLS application data. With HTTP (and HTTP/2) disabled, the TLS dissector
# hands decrypted application data to the "data" dissector, whose ``data.data`` holds it byte-exact,
# one occurrence per TLS record.
_TLS_FIELD = "data.data"

# Dissectors that would consume payload we want raw: HTTP asks TCP to reassemble bodies (and then
# drops a response the capture cut short); HTTP/2 would take over ALPN "h2" TLS connections.
_DISABLED_PROTOCOLS = ("http", "http2")

_TRUNCATED_FILE_MARKERS = ("cut short in the middle of a packet", "appears to have been cut short")


class TsharkUnavailableError(CaptureError):
    """tshark is missing or too old to run the ``tshark`` engine."""


class TsharkFailedError(CaptureError):
    """tshark exited with an error while reading the capture."""


def find_tshark(tshark_path: str | None = None) -> str:
    """Locate the tshark binary the way pyshark does (its ``config.ini``, then ``PATH``).

    Raises :class:`TsharkUnavailableError` (with an empty path) when there is none.
    """
    try:
        from pyshark.tshark.tshark import TSharkNotFoundException, get_process_path
    except ImportError:  # pyshark is a dependency, but the engine only needs the binary
        found = tshark_path or shutil.which("tshark")
        if found:
            return found
        raise TsharkUnavailableError("tshark", "not found on PATH; install Wireshark's tshark") from None
    try:
        return str(get_process_path(tshark_path))
    except TSharkNotFoundException as exc:
        raise TsharkUnavailableError("tshark", "not found; install Wireshark's tshark") from exc


@functools.lru_cache(maxsize=8)
def tshark_version(tshark: str) -> tuple[int, ...]:
    """Return tshark's version as a tuple of ints, e.g. ``(4, 0, 17)``."""
    try:
        out = subprocess.run([tshark, "-v"], capture_output=True, text=True, check=True, timeout=60).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        raise TsharkUnavailableError(tshark, f"cannot run `tshark -v`: {exc}") from exc
    match = re.search(r"(\d+)\.(\d+)\.(\d+)", out.splitlines()[0] if out else "")
    if not match:
        raise TsharkUnavailableError(tshark, f"cannot parse tshark version from {out[:80]!r}")
    return tuple(int(part) for part in match.groups())


def build_tshark_command(
    tshark: str,
    path: str | os.PathLike[str],
    server_ports: Collection[int],
    *,
    tls_keylog: Path | None = None,
    tls_ports: Collection[int] = DEFAULT_TLS_PORTS,
) -> list[str]:
    """The tshark command line that exports one line of fields per TCP segment of interest."""
    ports = sorted({int(p) for p in server_ports} | ({int(p) for p in tls_ports} if tls_keylog else set()))
    if not ports:
        raise ValueError("server_ports is empty: name at least one server port")
    # A display filter (-Y) is the only filter that applies when reading a file. ICMP errors quote a
    # TCP header and would otherwise match as a phantom segment.
    port_filter = " || ".join(f"tcp.port == {port}" for port in ports)
    read_filter = f"({port_filter}) && !icmp && !icmpv6"
    cmd = [
        tshark,
        "-n",  # no name resolution
        "-r",
        os.fspath(path),
        "-Y",
        read_filter,
        "-T",
        "fields",
        "-E",
        "occurrence=a",  # every occurrence, comma-separated: tunnels repeat ip.*, TLS repeats data
        "-E",
        "separator=/t",
        "-o",
        "tcp.relative_sequence_numbers:FALSE",
        "-o",
        "tcp.analyze_sequence_numbers:FALSE",
        "-o",
        "tcp.calculate_timestamps:FALSE",
        "-o",
        "tcp.try_heuristic_first:FALSE",
        "-o",
        "tcp.check_checksum:FALSE",
        # TLS records span TCP segments, so TLS needs TCP reassembly; plain mode does not want it.
        "-o",
        f"tcp.desegment_tcp_streams:{'TRUE' if tls_keylog else 'FALSE'}",
    ]
    for proto in _DISABLED_PROTOCOLS:
        cmd += ["--disable-protocol", proto]
    fields = list(_FIELDS)
    if tls_keylog is not None:
        cmd += ["-o", f"tls.keylog_file:{os.fspath(tls_keylog)}", "-o", "tls.desegment_ssl_records:TRUE"]
        for port in sorted({int(p) for p in tls_ports}):
            if port != 443:
                cmd += ["-d", f"tcp.port=={port},tls"]
        fields.append(_TLS_FIELD)
    for field in fields:
        cmd += ["-e", field]
    return cmd


def _last(value: str) -> str:
    """The innermost (last) occurrence of a field exported with ``occurrence=a``."""
    return value.rpartition(",")[2]


def iter_tshark_segments(
    path: str | os.PathLike[str],
    server_ports: Collection[int],
    *,
    tls_keylog: Path | None = None,
    tls_ports: Collection[int] = DEFAULT_TLS_PORTS,
    tshark_path: str | None = None,
    on_warning: Callable[[str], None] | None = None,
) -> Iterator[TcpSegment]:
    """Yield every TCP segment to or from ``server_ports`` in the capture at ``path``, in file order.

    Sequence and acknowledgement numbers are the raw ones from the TCP header. When a field repeats
    (tunnels), the innermost layer's value is used.

    With ``tls_keylog``, connections on ``tls_ports`` are decrypted: their segments carry the
    decrypted application bytes (in the frame where tshark completed each TLS record) and a
    synthesized sequence space per direction (first seen sequence number plus the count of
    decrypted bytes so far), so the TCP reassembler sees a plain byte stream. Handshake-only frames
    come through with an empty payload, keeping timing and SYN/FIN/RST flags.

    Raises :class:`TsharkUnavailableError` when tshark is missing or too old, and
    :class:`TsharkFailedError` when tshark rejects the file; a capture cut short in its last packet
    is not an error.
    """
    path_str = os.fspath(path)
    if not os.path.exists(path_str):
        raise CaptureError(path_str, "no such file")
    if os.path.getsize(path_str) == 0:
        raise EmptyCaptureError(path_str)
    if tls_keylog is not None and not Path(tls_keylog).is_file():
        raise CaptureError(os.fspath(tls_keylog), "TLS key log file not found")
    tshark = find_tshark(tshark_path)
    version = tshark_version(tshark)
    if version < MIN_TSHARK_VERSION:
        raise TsharkUnavailableError(tshark, f"tshark {'.'.join(map(str, version))} is too old; need 3.0 or newer")
    cmd = build_tshark_command(tshark, path_str, server_ports, tls_keylog=tls_keylog, tls_ports=tls_ports)
    tls_port_set = frozenset(int(p) for p in tls_ports) if tls_keylog is not None else frozenset()

    proc = subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        bufsize=1 << 20,
    )
    assert proc.stdout is not None and proc.stderr is not None
    finished = False
    try:
        if tls_port_set:
            yield from _parse_tls(proc.stdout, tls_port_set)
        else:
            yield from _parse_plain(proc.stdout)
        finished = True
    finally:
        if not finished:  # the consumer stopped early: do not leave tshark running
            proc.kill()
        proc.stdout.close()
        stderr = proc.stderr.read().decode("utf-8", "replace")
        proc.stderr.close()
        returncode = proc.wait()
    if returncode != 0:
        message = " ".join(
            line.strip() for line in stderr.splitlines() if line.strip() and not line.startswith("Running as user")
        )
        if not any(marker in message for marker in _TRUNCATED_FILE_MARKERS):
            raise TsharkFailedError(path_str, f"tshark exited with status {returncode}: {message[:500]}")
        if on_warning is not None:
            on_warning(f"{path_str}: last packet truncated; analyzed the intact part")


def _parse_plain(lines: Iterator[bytes]) -> Iterator[TcpSegment]:
    """Parse field-export lines into segments; the hot loop, so kept flat."""
    addr_cache: dict[bytes, str] = {}
    for raw in lines:
        if b"," in raw:
            seg = _parse_repeated(raw)
            if seg is not None:
                yield seg
            continue
        f = raw.rstrip(b"\n").split(b"\t")
        if f[1] and (not f[3] or f[5] == b"6"):
            src, dst = f[1], f[2]
        else:  # IPv6, or IPv6 inside an IPv4 tunnel (6in4, GRE): the IPv4 header is not innermost
            src, dst = f[3], f[4]
        src_s = addr_cache.get(src)
        if src_s is None:
            src_s = addr_cache[src] = src.decode()
        dst_s = addr_cache.get(dst)
        if dst_s is None:
            dst_s = addr_cache[dst] = dst.decode()
        yield _segment(f, src_s, dst_s)


def _parse_repeated(raw: bytes) -> TcpSegment | None:
    """Slow path for lines with repeated fields (tunnels): take the innermost occurrence of each."""
    f = [_last(v) for v in raw.rstrip(b"\n").decode().split("\t")]
    if not f[6]:
        return None
    ip_src, ip_dst, ip6_src, ip6_dst = f[1], f[2], f[3], f[4]
    # Both IPv4 and IPv6 present: the IPv4 header is the innermost one iff it carries TCP itself.
    if ip_src and ip6_src and f[5] != "6":
        ip_src = ip_dst = ""
    return _segment(f, ip_src or ip6_src, ip_dst or ip6_dst)


def _epoch(value: bytes | str) -> float:
    """``frame.time_epoch`` as whole seconds plus digits / 10**n: the same float the fast engine computes from the
    file's ticks (``float(text)`` of a nanosecond time can differ from it in the last bit, and records must agree)."""
    text = value.decode() if isinstance(value, bytes) else value
    whole, _, frac = text.partition(".")
    return int(whole) + (int(frac) / 10 ** len(frac) if frac else 0.0)


def _segment(f: Sequence[bytes] | Sequence[str], src: str, dst: str) -> TcpSegment:
    """A segment from one line's fields (see ``_FIELDS``), bytes or text, with its addresses chosen."""
    payload = binascii.a2b_hex(f[12]) if f[12] else b""
    return TcpSegment(
        _epoch(f[0]),
        src,
        int(f[6]),
        dst,
        int(f[7]),
        int(f[8]),
        int(f[9]) if f[9] else 0,
        int(f[10], 16) & 0xFF,
        payload,
        len(payload) < int(f[11] or 0),
    )


def _parse_tls(lines: Iterator[bytes], tls_ports: frozenset[int]) -> Iterator[TcpSegment]:
    """Like :func:`_parse_plain`, but segments on ``tls_ports`` carry decrypted bytes in a synthetic
    per-direction sequence space."""
    # (src, sport, dst, dport) -> next synthetic sequence number in that direction
    next_seq: dict[tuple[str, int, str, int], int] = {}
    for raw in lines:
        decrypted_hex = raw.rstrip(b"\n").rpartition(b"\t")[2]
        seg = _parse_repeated(raw.rsplit(b"\t", 1)[0] + b"\n")
        if seg is None:
            continue
        if seg.sport not in tls_ports and seg.dport not in tls_ports:
            yield seg
            continue
        key = (seg.src, seg.sport, seg.dst, seg.dport)
        data = binascii.a2b_hex(decrypted_hex.replace(b",", b"")) if decrypted_hex else b""
        if seg.flags & SYN:
            # A SYN (re)starts the direction: data begins one past its sequence number.
            next_seq[key] = seg.seq + 1
            seq = seg.seq
        else:
            seq = next_seq.setdefault(key, seg.seq)
            next_seq[key] = seq + len(data)
        reverse = next_seq.get((seg.dst, seg.dport, seg.src, seg.sport))
        seg.seq = seq
        if reverse is not None:
            seg.ack = reverse
        seg.payload = data
        yield seg
