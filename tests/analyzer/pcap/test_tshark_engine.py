"""The tshark engine: segments from the committed corpus (no root) compared with the fast engine's and with
crafted variants of the same files, then live loopback captures (``-m live``: root, tcpdump) compared byte for
byte with what a raw client sent and received, plain and over TLS with a key log.
"""

from __future__ import annotations

import os
import shutil
import socket
import ssl
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from analyzer.pcap.captures import iter_packets
from analyzer.pcap.errors import CaptureError, EmptyCaptureError
from analyzer.pcap.linklayer import segments_from_packets
from analyzer.pcap.segments import FIN, SYN, TcpSegment
from analyzer.pcap.tshark_engine import (
    TsharkFailedError,
    build_tshark_command,
    find_tshark,
    iter_tshark_segments,
)
from analyzer.recorder.process import MitmdumpProcess
from tests.support import processes
from tests.support.corpus import entries
from tests.support.damage import add_vlan, snap
from tests.support.defaults import MODEL
from tests.support.frames import ipv4
from tests.support.pcapfile import Capture, capture_to_pcapng, read_pcap, write_pcap
from tests.support.rawhttp import request_bytes
from tests.support.tcpdump import require_live_capture, tcpdump

pytestmark = pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark not installed")

CORPUS = entries()
TOKENS = 40


def corpus_file(name: str) -> tuple[Path, int]:
    return CORPUS[name].path, CORPUS[name].port


# --------------------------------------------------------------------------- live traffic and capture


@dataclass
class Exchange:
    """What one client connection sent and received, byte for byte."""

    client_port: int
    request: bytes
    response: bytes


def client_exchange(host: str, port: int, context: ssl.SSLContext | None = None) -> Exchange:
    """One streamed POST /api/generate on a ``Connection: close`` connection; every byte until the server closes."""
    raw = socket.create_connection((host, port), timeout=10)
    client_port = raw.getsockname()[1]
    body = {"model": MODEL, "prompt": "why is the sky blue?", "options": {"emulator_tokens": TOKENS}}
    request = request_bytes("POST", "/api/generate", body, host=f"{host}:{port}", close=True)
    conn = raw if context is None else context.wrap_socket(raw)
    got = b""
    with conn:
        conn.sendall(request)
        for _ in range(100_000):
            try:
                chunk = conn.recv(65536)
            except ssl.SSLEOFError:  # the peer closed without close_notify
                break
            if not chunk:
                break
            got += chunk
    assert got.startswith(b"HTTP/1.1 200 ") and got.endswith(b"0\r\n\r\n")
    return Exchange(client_port, request, got)


def capture_exchanges(
    out: Path, host: str = "127.0.0.1", iface: str = "lo", connections: int = 2
) -> tuple[int, list[Exchange]]:
    """``connections`` exchanges with the emulator on ``host``, captured by tcpdump on ``iface``."""
    require_live_capture()
    with processes.emulator(host) as emulator, tcpdump(out, f"tcp port {emulator.port}", iface):
        exchanges = [client_exchange(host, emulator.port) for _ in range(connections)]
    return emulator.port, exchanges


# --------------------------------------------------------------------------- checking segments


def stream_bytes(segments: list[TcpSegment], src_port: int, dst_port: int, fin: bool = True) -> bytes:
    """Concatenate one direction's payloads in sequence order, asserting there is no hole.

    Duplicates (``-i any`` can see a loopback packet twice, retransmissions) must carry the same bytes.
    """
    direction = [s for s in segments if s.sport == src_port and s.dport == dst_port]
    assert direction, f"no segments {src_port} -> {dst_port}"
    syn = [s for s in direction if s.flags & SYN]
    assert syn, "SYN not captured"
    next_seq = (syn[0].seq + 1) & 0xFFFFFFFF
    seen: dict[int, bytes] = {}
    for s in direction:
        if s.payload:
            assert seen.setdefault(s.seq, s.payload) == s.payload
    out = bytearray()
    while next_seq in seen:
        data = seen.pop(next_seq)
        out += data
        next_seq = (next_seq + len(data)) & 0xFFFFFFFF
    assert not seen, f"segments after a hole: {sorted(seen)}"
    if fin:
        assert any(s.flags & FIN and (s.seq + len(s.payload)) & 0xFFFFFFFF == next_seq for s in direction), (
            "FIN not at end of data"
        )
    return bytes(out)


def check_bytes_in_place(segments: list[TcpSegment], src_port: int, dst_port: int, sent: bytes) -> int:
    """Every captured payload byte is the byte sent at that stream offset (holes allowed).

    Returns how many distinct bytes were seen.
    """
    direction = [s for s in segments if s.sport == src_port and s.dport == dst_port]
    isn = next(s.seq for s in direction if s.flags & SYN)
    covered = set()
    for s in direction:
        if s.payload:
            offset = (s.seq - isn - 1) & 0xFFFFFFFF
            assert sent[offset : offset + len(s.payload)] == s.payload
            covered.update(range(offset, offset + len(s.payload)))
    return len(covered)


def check_exchanges(
    segments: list[TcpSegment], server_port: int, exchanges: list[Exchange], holes: bool = False
) -> None:
    """The segments carry exactly what each exchange sent; with ``holes``, lost segments are allowed
    (``-i any`` drops some under load) but every captured byte must be right."""
    assert all(server_port in (s.sport, s.dport) for s in segments)
    ts = [s.ts for s in segments]
    assert ts == sorted(ts)
    for ex in exchanges:
        if holes:
            seen = check_bytes_in_place(segments, server_port, ex.client_port, ex.response)
            assert seen > len(ex.response) // 2
            check_bytes_in_place(segments, ex.client_port, server_port, ex.request)
            continue
        assert stream_bytes(segments, ex.client_port, server_port) == ex.request
        assert stream_bytes(segments, server_port, ex.client_port) == ex.response
        response_segments = [s for s in segments if s.sport == server_port and s.payload]
        assert len(response_segments) > 3, "expected the response to span several segments"
    assert not any(s.truncated for s in segments)


# --------------------------------------------------------------------------- the corpus: no root needed


def fast_segments(path: Path, port: int) -> list[TcpSegment]:
    return list(segments_from_packets(iter_packets(str(path)), {port}))


def assert_same_segments(fast: list[TcpSegment], slow: list[TcpSegment]) -> None:
    """Identical segments, timestamps included (both engines compute the same float from the file's ticks)."""
    assert len(fast) == len(slow)
    for a, b in zip(fast, slow, strict=True):
        assert (a.ts, a.src, a.sport, a.dst, a.dport, a.seq, a.ack, a.flags, a.truncated, a.payload) == (
            b.ts, b.src, b.sport, b.dst, b.dport, b.seq, b.ack, b.flags, b.truncated, b.payload,
        )  # fmt: skip


def in_nanoseconds(capture: Capture) -> Capture:
    """The same capture with a nanosecond-resolution header (as ``tcpdump --time-stamp-precision nano``)."""
    packets = tuple(replace(p, frac=p.frac * 1000, nanos=True) for p in capture.packets)
    return replace(capture, packets=packets, nanos=True)


VARIANTS = ("pcap", "nanoseconds", "nanoseconds-pcapng", "snaplen", "vlan")


@pytest.mark.parametrize("name", ["lo4", "lo6", "any4", "null6", "proxy"])
def test_corpus_gives_the_same_segments_as_the_fast_engine(name: str) -> None:
    path, port = corpus_file(name)
    fast = fast_segments(path, port)
    assert len(fast) > 100, "the corpus capture holds whole workloads"
    assert_same_segments(fast, list(iter_tshark_segments(path, {port})))


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("name", ["lo4", "lo6"])
def test_rewritten_captures_give_the_same_segments_as_the_fast_engine(tmp_path: Path, name: str, variant: str) -> None:
    source, port = corpus_file(name)
    capture = read_pcap(source)
    path = tmp_path / "variant.pcap"
    if variant == "pcap":
        path = source
    elif variant == "nanoseconds":
        write_pcap(path, in_nanoseconds(capture))
    elif variant == "nanoseconds-pcapng":
        path = tmp_path / "variant.pcapng"
        path.write_bytes(capture_to_pcapng(in_nanoseconds(capture)))
    elif variant == "snaplen":
        # Long enough for every header (an IPv6 SYN with options is 94 bytes): where the snap length cuts a TCP
        # header, the fast engine marks the segment truncated and tshark does not (an open question, not tested).
        write_pcap(path, snap(capture, 100))
    else:
        write_pcap(path, add_vlan(capture))
    fast = fast_segments(path, port)
    assert len(fast) > 100
    assert_same_segments(fast, list(iter_tshark_segments(path, {port})))


def test_other_ports_are_filtered_out() -> None:
    path, port = corpus_file("lo4")
    assert list(iter_tshark_segments(path, {port + 1})) == []


def test_snap_length_marks_truncated(tmp_path: Path) -> None:
    path, port = corpus_file("lo4")
    cut = write_pcap(tmp_path / "cut.pcap", snap(read_pcap(path), 76))
    # Ethernet 14 + IPv4 20 + TCP 32 (timestamps) = 66; 10 bytes of payload are kept.
    full = list(iter_tshark_segments(path, {port}))
    short = list(iter_tshark_segments(cut, {port}))
    assert len(full) == len(short)
    for a, b in zip(full, short, strict=True):
        assert (a.seq, a.ack, a.flags, a.sport) == (b.seq, b.ack, b.flags, b.sport)
        assert b.payload == a.payload[:10]
        assert b.truncated == (len(a.payload) > 10)
    assert sum(s.truncated for s in short) == sum(len(s.payload) > 10 for s in full) > 50


def test_capture_cut_short_mid_packet_is_not_an_error(tmp_path: Path) -> None:
    path, port = corpus_file("lo4")
    full = list(iter_tshark_segments(path, {port}))
    cut = tmp_path / "cut.pcap"
    data = path.read_bytes()
    cut.write_bytes(data[: len(data) - 5])
    assert list(iter_tshark_segments(cut, {port})) == full[:-1]


def test_bad_files(tmp_path: Path) -> None:
    empty = tmp_path / "empty.pcap"
    empty.write_bytes(b"")
    with pytest.raises(EmptyCaptureError):
        list(iter_tshark_segments(empty, {11434}))
    junk = tmp_path / "junk.pcap"
    junk.write_bytes(b"this is not a capture file at all\n" * 10)
    with pytest.raises(TsharkFailedError, match=r"junk\.pcap"):
        list(iter_tshark_segments(junk, {11434}))
    with pytest.raises(CaptureError, match="no such file"):
        list(iter_tshark_segments(tmp_path / "missing.pcap", {11434}))


def tshark_children() -> list[int]:
    """Pids of this process's tshark children (Linux /proc), zombies included."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        comm, rest = stat[stat.index("(") + 1 : stat.rindex(")")], stat[stat.rindex(")") + 2 :].split()
        if comm == "tshark" and int(rest[1]) == os.getpid():
            found.append(int(entry.name))
    return found


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc")
def test_stopping_early_ends_tshark() -> None:
    """Closing the iterator after one segment kills tshark and reaps it: no process is left behind."""
    path, port = corpus_file("lo4")
    assert tshark_children() == []
    it = iter_tshark_segments(path, {port})
    first = next(it)
    assert first.flags & SYN
    running = tshark_children()
    assert len(running) == 1, "tshark runs while the iterator is open"
    it.close()  # must kill tshark and not raise
    assert tshark_children() == []
    assert not Path(f"/proc/{running[0]}").exists()


def test_command_disables_reassembly_and_http() -> None:
    cmd = build_tshark_command(find_tshark(), "x.pcap", {11434, 8080})
    options = {cmd[i + 1] for i, arg in enumerate(cmd) if arg == "-o"}
    assert {"tcp.desegment_tcp_streams:FALSE", "tcp.relative_sequence_numbers:FALSE"} <= options
    assert cmd[cmd.index("--disable-protocol") + 1] == "http"
    assert "(tcp.port == 8080 || tcp.port == 11434)" in " ".join(cmd)
    tls = build_tshark_command(find_tshark(), "x.pcap", {11434}, tls_keylog=Path("k.log"), tls_ports={443, 8443})
    joined = " ".join(tls)
    assert "-d tcp.port==8443,tls" in joined
    assert "tcp.port==443,tls" not in joined
    assert "(tcp.port == 443 || tcp.port == 8443 || tcp.port == 11434)" in joined
    assert "tls.keylog_file:k.log" in joined


# --------------------------------------------------------------------------- tunnels (rewritten corpus)


def outer_ipv4(inner: bytes, proto: int) -> bytes:
    return ipv4("10.9.8.7", "10.9.8.6", inner, proto=proto)


def tunnelled(frame: bytes, tunnel: str) -> bytes:
    eth, ethertype, ip = frame[:12], frame[12:14], frame[14:]
    if tunnel == "vlan":
        return eth + b"\x81\x00\x00\x2a" + ethertype + ip
    if tunnel == "ipip":
        return eth + b"\x08\x00" + outer_ipv4(ip, 4)
    if tunnel == "6in4":
        return eth + b"\x08\x00" + outer_ipv4(ip, 41)
    return eth + b"\x08\x00" + outer_ipv4(b"\x00\x00" + ethertype + ip, 47)  # GRE


@pytest.mark.parametrize(("name", "tunnel"), [("lo4", "vlan"), ("lo4", "ipip"), ("lo6", "6in4"), ("lo4", "gre")])
def test_tunnels_give_innermost_addresses(tmp_path: Path, name: str, tunnel: str) -> None:
    """Rewrite a loopback capture into a tunnelled one: segments must come out unchanged."""
    path, port = corpus_file(name)
    capture = read_pcap(path)
    wrapped = [replace(p, frame=tunnelled(p.frame, tunnel)) for p in capture.packets]
    out = write_pcap(tmp_path / f"{tunnel}.pcap", capture, wrapped)
    plain = list(iter_tshark_segments(path, {port}))
    assert len(plain) > 100
    assert list(iter_tshark_segments(out, {port})) == plain


# --------------------------------------------------------------------------- live captures (root, tcpdump)


@pytest.mark.live
@pytest.mark.parametrize(("host", "iface"), [("127.0.0.1", "lo"), ("::1", "lo")])
def test_loopback_capture_carries_exactly_what_was_sent(tmp_path: Path, host: str, iface: str) -> None:
    pcap = tmp_path / "lo.pcap"
    port, exchanges = capture_exchanges(pcap, host, iface)
    segments = list(iter_tshark_segments(pcap, {port}))
    assert {s.src for s in segments} == {host}
    check_exchanges(segments, port, exchanges)


@pytest.mark.live
def test_any_interface_as_pcapng(tmp_path: Path) -> None:
    pcap = tmp_path / "any.pcap"
    port, exchanges = capture_exchanges(pcap, iface="any")
    pcapng = tmp_path / "any.pcapng"
    pcapng.write_bytes(capture_to_pcapng(read_pcap(pcap)))
    from_pcap = list(iter_tshark_segments(pcap, {port}))
    from_pcapng = list(iter_tshark_segments(pcapng, {port}))
    check_exchanges(from_pcapng, port, exchanges, holes=True)
    assert from_pcap == from_pcapng


@pytest.mark.live
def test_tls_decrypted_with_keylog(tmp_path: Path) -> None:
    """The raw client over TLS to mitmdump (reverse proxy, HTTPS front) → emulator; decrypted with the key log."""
    require_live_capture()
    keylog = tmp_path / "keys.log"
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.keylog_filename = str(keylog)
    pcap = tmp_path / "tls.pcap"
    with (
        processes.emulator() as emulator,
        MitmdumpProcess(emulator.url, addon=None, console_path=tmp_path / "mitmdump.log") as front,
        tcpdump(pcap, f"tcp port {front.port}"),
    ):
        exchanges = [client_exchange("127.0.0.1", front.port, context) for _ in range(2)]

    # Without the key log: ciphertext, which is not what was received.
    raw = list(iter_tshark_segments(pcap, {front.port}))
    assert all(ex.response[-200:] not in b"".join(s.payload for s in raw) for ex in exchanges)

    segments = list(iter_tshark_segments(pcap, {front.port}, tls_keylog=keylog, tls_ports={front.port}))
    assert len(segments) == len(raw)
    for ex in exchanges:
        assert stream_bytes(segments, ex.client_port, front.port, fin=False) == ex.request
        assert stream_bytes(segments, front.port, ex.client_port, fin=False) == ex.response
