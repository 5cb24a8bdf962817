"""The tshark engine on real loopback captures made by tcpdump in the test (needs root, tcpdump, tshark)."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import ssl
import struct
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from analyzer.pcap.errors import CaptureError, EmptyCaptureError
from analyzer.pcap.segments import FIN, SYN, TcpSegment
from analyzer.pcap.tcpdump import tcpdump as run_tcpdump
from analyzer.pcap.tshark_engine import (
    TsharkFailedError,
    build_tshark_command,
    find_tshark,
    iter_tshark_segments,
)

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark not installed"),
    pytest.mark.skipif(shutil.which("tcpdump") is None, reason="tcpdump not installed"),
    pytest.mark.skipif(os.geteuid() != 0, reason="capturing on lo needs root"),
]

TOKENS = 40


# --------------------------------------------------------------------------- traffic and capture


@dataclass
class Exchange:
    """What one client connection sent and received, byte for byte."""

    client_port: int
    request: bytes
    response: bytes


@dataclass
class NdjsonServer:
    """A tiny HTTP/1.1 server streaming a chunked NDJSON response per request, one chunk per flush."""

    host: str
    wrap: Callable[[socket.socket], socket.socket] = lambda s: s
    sock: socket.socket = field(init=False)
    port: int = field(init=False)
    threads: list[threading.Thread] = field(default_factory=list)

    def __post_init__(self) -> None:
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        self.sock.bind((self.host, 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        accept = threading.Thread(target=self._accept_loop, daemon=True)
        accept.start()

    def _accept_loop(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            t = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            self.threads.append(t)
            t.start()

    def _serve(self, raw: socket.socket) -> None:
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conn = self.wrap(raw)
        with conn:
            buf = b""
            while b"\r\n\r\n" not in buf:
                chunk = conn.recv(65536)
                if not chunk:
                    return
                buf += chunk
            conn.sendall(ndjson_head())
            for line in ndjson_lines():
                conn.sendall(b"%x\r\n%s\r\n" % (len(line), line))
                time.sleep(0.001)
            conn.sendall(b"0\r\n\r\n")

    def close(self) -> None:
        self.sock.close()
        for t in self.threads:
            t.join(10)


def ndjson_head() -> bytes:
    return b"HTTP/1.1 200 OK\r\nContent-Type: application/x-ndjson\r\nTransfer-Encoding: chunked\r\n\r\n"


def ndjson_lines() -> list[bytes]:
    lines = [
        b'{"model":"m","created_at":"2024-01-01T00:00:00.%09dZ","response":"tok%d","done":false}\n' % (i, i)
        for i in range(TOKENS)
    ]
    lines.append(b'{"model":"m","done":true,"done_reason":"stop","eval_count":%d}\n' % TOKENS)
    return lines


def expected_response() -> bytes:
    body = b"".join(b"%x\r\n%s\r\n" % (len(line), line) for line in ndjson_lines())
    return ndjson_head() + body + b"0\r\n\r\n"


def client_exchange(host: str, port: int, wrap: Callable[[socket.socket], socket.socket] = lambda s: s) -> Exchange:
    """One POST /api/generate; read until the chunked body's end."""
    raw = socket.create_connection((host, port), timeout=10)
    client_port = raw.getsockname()[1]
    body = b'{"model":"m","prompt":"why is the sky blue?"}'
    request = (
        b"POST /api/generate HTTP/1.1\r\nHost: %s:%d\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n%s" % (host.encode(), port, len(body), body)
    )
    conn = wrap(raw)
    with conn:
        conn.sendall(request)
        got = b""
        while not got.endswith(b"0\r\n\r\n"):
            chunk = conn.recv(65536)
            if not chunk:
                break
            got += chunk
    return Exchange(client_port, request, got)


@contextlib.contextmanager
def tcpdump(out: Path, port: int, iface: str = "lo", extra: tuple[str, ...] = ()) -> Iterator[None]:
    """Capture ``tcp port PORT`` on ``iface`` into ``out`` while the body runs (the project's tcpdump runner)."""
    with run_tcpdump(out, f"tcp port {port}", iface, extra):
        yield


def capture_exchanges(
    out: Path,
    host: str = "127.0.0.1",
    iface: str = "lo",
    connections: int = 2,
    extra: tuple[str, ...] = (),
) -> tuple[int, list[Exchange]]:
    server = NdjsonServer(host)
    try:
        with tcpdump(out, server.port, iface, extra):
            exchanges = [client_exchange(host, server.port) for _ in range(connections)]
    finally:
        server.close()
    for ex in exchanges:
        assert ex.response == expected_response()
    return server.port, exchanges


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


# --------------------------------------------------------------------------- tests


def test_ipv4_loopback(tmp_path: Path) -> None:
    pcap = tmp_path / "v4.pcap"
    port, exchanges = capture_exchanges(pcap)
    segments = list(iter_tshark_segments(pcap, {port}))
    assert {s.src for s in segments} == {"127.0.0.1"}
    check_exchanges(segments, port, exchanges)


def test_ipv6_loopback(tmp_path: Path) -> None:
    pcap = tmp_path / "v6.pcap"
    port, exchanges = capture_exchanges(pcap, host="::1")
    segments = list(iter_tshark_segments(pcap, {port}))
    assert {s.src for s in segments} == {"::1"}
    check_exchanges(segments, port, exchanges)


def test_any_interface_as_pcapng(tmp_path: Path) -> None:
    pcap = tmp_path / "any.pcap"
    port, exchanges = capture_exchanges(pcap, iface="any")
    pcapng = tmp_path / "any.pcapng"
    subprocess.run(["editcap", "-F", "pcapng", str(pcap), str(pcapng)], check=True)
    assert pcapng.read_bytes()[:4] == b"\x0a\x0d\x0d\x0a"
    from_pcap = list(iter_tshark_segments(pcap, {port}))
    from_pcapng = list(iter_tshark_segments(pcapng, {port}))
    check_exchanges(from_pcapng, port, exchanges, holes=True)
    assert from_pcap == from_pcapng


def test_other_ports_are_filtered_out(tmp_path: Path) -> None:
    pcap = tmp_path / "v4.pcap"
    port, _ = capture_exchanges(pcap, connections=1)
    assert list(iter_tshark_segments(pcap, {port + 1})) == []


def test_snap_length_marks_truncated(tmp_path: Path) -> None:
    pcap = tmp_path / "v4.pcap"
    port, exchanges = capture_exchanges(pcap, connections=1)
    cut = tmp_path / "cut.pcap"
    # Ethernet 14 + IPv4 20 + TCP 32 (timestamps) = 66; keep 10 bytes of payload.
    subprocess.run(["editcap", "-s", "76", str(pcap), str(cut)], check=True)
    full = list(iter_tshark_segments(pcap, {port}))
    short = list(iter_tshark_segments(cut, {port}))
    assert len(full) == len(short)
    for a, b in zip(full, short, strict=True):
        assert (a.seq, a.ack, a.flags, a.sport) == (b.seq, b.ack, b.flags, b.sport)
        assert b.payload == a.payload[:10]
        assert b.truncated == (len(a.payload) > 10)
    assert any(s.truncated for s in short)


def test_capture_cut_short_mid_packet_is_not_an_error(tmp_path: Path) -> None:
    pcap = tmp_path / "v4.pcap"
    port, _ = capture_exchanges(pcap, connections=1)
    full = list(iter_tshark_segments(pcap, {port}))
    cut = tmp_path / "cut.pcap"
    data = pcap.read_bytes()
    cut.write_bytes(data[: len(data) - 5])
    segments = list(iter_tshark_segments(cut, {port}))
    assert segments == full[:-1]


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


def test_stopping_early_ends_tshark(tmp_path: Path) -> None:
    pcap = tmp_path / "v4.pcap"
    port, _ = capture_exchanges(pcap, connections=1)
    it = iter_tshark_segments(pcap, {port})
    first = next(it)
    assert first.flags & SYN
    it.close()  # must kill tshark and not raise


def test_command_disables_reassembly_and_http() -> None:
    cmd = build_tshark_command(find_tshark(), "x.pcap", {11434, 8080})
    joined = " ".join(cmd)
    assert "tcp.desegment_tcp_streams:FALSE" in joined
    assert "tcp.relative_sequence_numbers:FALSE" in joined
    assert "--disable-protocol http" in joined
    assert "(tcp.port == 8080 || tcp.port == 11434)" in joined
    tls = build_tshark_command(find_tshark(), "x.pcap", {11434}, tls_keylog=Path("k.log"), tls_ports={443, 8443})
    joined = " ".join(tls)
    assert "-d tcp.port==8443,tls" in joined
    assert "tcp.port==443,tls" not in joined
    assert "(tcp.port == 443 || tcp.port == 8443 || tcp.port == 11434)" in joined
    assert "tls.keylog_file:k.log" in joined


# --------------------------------------------------------------------------- tunnels


def read_pcap(path: Path) -> tuple[bytes, list[tuple[bytes, bytes]]]:
    """(global header, [(record header, frame)]) of a classic little-endian pcap from tcpdump."""
    data = path.read_bytes()
    assert data[:4] in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1")
    records, off = [], 24
    while off + 16 <= len(data):
        incl = struct.unpack_from("<I", data, off + 8)[0]
        records.append((data[off : off + 16], data[off + 16 : off + 16 + incl]))
        off += 16 + incl
    return data[:24], records


def write_pcap(path: Path, header: bytes, records: list[tuple[bytes, bytes]]) -> None:
    with path.open("wb") as f:
        f.write(header)
        for rec, frame in records:
            f.write(rec[:8] + struct.pack("<II", len(frame), len(frame)) + frame)


def outer_ipv4(inner: bytes, proto: int) -> bytes:
    return struct.pack(
        "!BBHHHBBH4s4s", 0x45, 0, 20 + len(inner), 0, 0, 64, proto, 0,
        socket.inet_aton("10.9.8.7"), socket.inet_aton("10.9.8.6"),
    ) + inner  # fmt: skip


@pytest.mark.parametrize(
    ("host", "tunnel"),
    [
        ("127.0.0.1", "vlan"),
        ("127.0.0.1", "ipip"),
        ("::1", "6in4"),
        ("127.0.0.1", "gre"),
    ],
)
def test_tunnels_give_innermost_addresses(tmp_path: Path, host: str, tunnel: str) -> None:
    """Rewrite a loopback capture into a tunnelled one: segments must come out unchanged."""
    pcap = tmp_path / "plain.pcap"
    port, _ = capture_exchanges(pcap, host=host, connections=1)
    header, records = read_pcap(pcap)
    wrapped = []
    for rec, frame in records:
        eth, ethertype, ip = frame[:12], frame[12:14], frame[14:]
        if tunnel == "vlan":
            frame = eth + b"\x81\x00\x00\x2a" + ethertype + ip
        elif tunnel == "ipip":
            frame = eth + b"\x08\x00" + outer_ipv4(ip, 4)
        elif tunnel == "6in4":
            frame = eth + b"\x08\x00" + outer_ipv4(ip, 41)
        else:
            frame = eth + b"\x08\x00" + outer_ipv4(b"\x00\x00" + ethertype + ip, 47)
        wrapped.append((rec, frame))
    tunnelled = tmp_path / f"{tunnel}.pcap"
    write_pcap(tunnelled, header, wrapped)
    assert list(iter_tshark_segments(tunnelled, {port})) == list(iter_tshark_segments(pcap, {port}))


# --------------------------------------------------------------------------- TLS


def make_cert(directory: Path) -> tuple[Path, Path]:
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
         "-days", "1", "-subj", "/CN=localhost"],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl not installed")
@pytest.mark.parametrize("tls_version", [ssl.TLSVersion.TLSv1_3, ssl.TLSVersion.TLSv1_2])
def test_tls_decrypted_with_keylog(tmp_path: Path, tls_version: ssl.TLSVersion) -> None:
    cert, key = make_cert(tmp_path)
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(cert, key)
    server_ctx.maximum_version = tls_version
    keylog = tmp_path / "keys.log"
    client_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client_ctx.check_hostname = False
    client_ctx.verify_mode = ssl.CERT_NONE
    client_ctx.keylog_filename = str(keylog)

    server = NdjsonServer("127.0.0.1", wrap=lambda s: server_ctx.wrap_socket(s, server_side=True))
    pcap = tmp_path / "tls.pcap"
    try:
        with tcpdump(pcap, server.port):
            exchanges = [client_exchange("127.0.0.1", server.port, wrap=client_ctx.wrap_socket) for _ in range(2)]
    finally:
        server.close()
    for ex in exchanges:
        assert ex.response == expected_response()

    # Without the key log: ciphertext, which is not what was sent.
    raw = list(iter_tshark_segments(pcap, {server.port}))
    assert expected_response() not in b"".join(s.payload for s in raw)

    segments = list(iter_tshark_segments(pcap, {server.port}, tls_keylog=keylog, tls_ports={server.port}))
    assert len(segments) == len(raw)
    for ex in exchanges:
        # The client closes without close_notify (RST), so no FIN is expected.
        assert stream_bytes(segments, ex.client_port, server.port, fin=False) == ex.request
        assert stream_bytes(segments, server.port, ex.client_port, fin=False) == ex.response


# --------------------------------------------------------------------------- same segments as the fast engine


def fast_segments(path: Path, port: int) -> list[TcpSegment]:
    captures = pytest.importorskip("analyzer.pcap.captures")
    linklayer = pytest.importorskip("analyzer.pcap.linklayer")
    return list(linklayer.segments_from_packets(captures.iter_packets(str(path)), {port}))


def assert_same_segments(fast: list[TcpSegment], slow: list[TcpSegment]) -> None:
    assert len(fast) == len(slow)
    for a, b in zip(fast, slow, strict=True):
        assert abs(a.ts - b.ts) < 1e-6
        assert (a.src, a.sport, a.dst, a.dport, a.seq, a.ack, a.flags, a.truncated) == (
            b.src, b.sport, b.dst, b.dport, b.seq, b.ack, b.flags, b.truncated,
        )  # fmt: skip
        assert a.payload == b.payload


@pytest.mark.parametrize(
    ("host", "iface", "variant"),
    [
        ("127.0.0.1", "lo", "pcap"),
        ("::1", "lo", "pcap"),
        ("127.0.0.1", "any", "pcap"),
        ("::1", "any", "pcapng"),
        ("127.0.0.1", "lo", "nanoseconds"),
        ("::1", "any", "nanoseconds-pcapng"),
        ("127.0.0.1", "lo", "snaplen"),
        ("127.0.0.1", "lo", "vlan"),
    ],
)
def test_same_segments_as_fast_engine(tmp_path: Path, host: str, iface: str, variant: str) -> None:
    pcap = tmp_path / "capture.pcap"
    nano = ("--time-stamp-precision", "nano") if variant.startswith("nanoseconds") else ()
    port, _ = capture_exchanges(pcap, host=host, iface=iface, extra=nano)
    path = pcap
    if variant.endswith("pcapng"):
        path = tmp_path / "capture.pcapng"
        subprocess.run(["editcap", "-F", "pcapng", str(pcap), str(path)], check=True)
    elif variant == "snaplen":
        path = tmp_path / "cut.pcap"
        subprocess.run(["editcap", "-s", "90", str(pcap), str(path)], check=True)
    elif variant == "vlan":
        header, records = read_pcap(pcap)
        path = tmp_path / "vlan.pcap"
        write_pcap(path, header, [(r, f[:12] + b"\x81\x00\x00\x2a" + f[12:]) for r, f in records])
    fast = fast_segments(path, port)
    assert fast, "fast engine found no segments"
    assert_same_segments(fast, list(iter_tshark_segments(path, {port})))
