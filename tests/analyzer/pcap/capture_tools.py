"""Real captures for the analyze-pcap tests: run tcpdump on loopback, rewrite and damage its files.

- :func:`tcpdump` runs ``tcpdump -i IFACE --immediate-mode -w FILE FILTER`` around a block of traffic.
- :func:`read_pcap` / :func:`write_pcap` read tcpdump's classic pcap into :class:`Packet` records and
  write them back (with ``pcapgen.pcap``, the shared writer).
- :func:`to_dlt_null` / :func:`to_dlt_loop` rewrite a Linux ``lo`` (Ethernet) capture into macOS
  ``lo0`` (DLT_NULL, host-order address family) or OpenBSD (DLT_LOOP, big-endian) framing.
- :func:`drop`, :func:`duplicate`, :func:`swap`, :func:`split_overlapping`, :func:`window` and
  :func:`truncate_last_packet` are the crafted manipulations of a real capture's packet list.
- The workload: :func:`run_workload` drives the official ``ollama`` and ``openai`` clients against an
  emulator and returns a :class:`Sent` per request (what its client received); :func:`capture_workload`
  and :func:`make_proxy_capture` capture it directly or through a real mitmdump.

Nothing here waits unboundedly: every wait has a deadline.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import struct
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import ollama
import openai
import pcapgen
import pytest

from analyzer.emulator import EmulatorConfig, EmulatorThread, plan_reply
from analyzer.emulator.examples import WEATHER_TOOL
from analyzer.pcap.tcpdump import CaptureFailed, TcpdumpRun, tcpdump
from analyzer.recorder.process import MitmdumpProcess

LINKTYPE_NULL = 0
LINKTYPE_ETHERNET = 1
LINKTYPE_LOOP = 108
LINKTYPE_LINUX_SLL2 = 276

AF_INET_BSD = 2
AF_INET6_DARWIN = 30


# --------------------------------------------------------------------------- pcap records


@dataclass(frozen=True)
class Packet:
    """One pcap record: capture time (seconds, microseconds) and the frame as captured."""

    sec: int
    usec: int
    frame: bytes

    @property
    def ts(self) -> float:
        return self.sec + self.usec / 1e6


@dataclass(frozen=True)
class Capture:
    """A classic µs pcap file in memory."""

    linktype: int
    snaplen: int
    packets: tuple[Packet, ...]


def read_pcap(path: Path) -> Capture:
    """Read tcpdump's classic pcap (µs timestamps, either byte order)."""
    data = Path(path).read_bytes()
    magic = struct.unpack_from("<I", data)[0]
    endian = "<" if magic == 0xA1B2C3D4 else ">"
    if struct.unpack_from(endian + "I", data)[0] != 0xA1B2C3D4:
        raise ValueError(f"{path}: not a microsecond pcap file")
    _m, _vmaj, _vmin, _zone, _sig, snaplen, linktype = struct.unpack_from(endian + "IHHiIII", data)
    packets = []
    pos = 24
    while pos + 16 <= len(data):
        sec, usec, incl, _orig = struct.unpack_from(endian + "IIII", data, pos)
        packets.append(Packet(sec, usec, data[pos + 16 : pos + 16 + incl]))
        pos += 16 + incl
    return Capture(linktype, snaplen, tuple(packets))


def write_pcap(
    path: Path, capture: Capture, packets: Sequence[Packet] | None = None, linktype: int | None = None
) -> Path:
    """Write ``packets`` (default: the capture's) as a little-endian µs pcap with the shared writer."""
    chosen = capture.packets if packets is None else packets
    data = pcapgen.pcap(
        [(p.ts, p.frame) for p in chosen],
        linktype=capture.linktype if linktype is None else linktype,
        snaplen=capture.snaplen,
    )
    Path(path).write_bytes(data)
    return Path(path)


# --------------------------------------------------------------------------- decoding frames (Ethernet / SLL2)


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


# --------------------------------------------------------------------------- link-layer rewrites


def _reframe(capture: Capture, linktype: int, header: struct.Struct, families: tuple[int, int]) -> Capture:
    if capture.linktype != LINKTYPE_ETHERNET:
        raise ValueError("only Linux lo (Ethernet) captures can be rewritten")
    packets = []
    for p in capture.packets:
        ip = p.frame[14:]
        family = families[0] if ip[0] >> 4 == 4 else families[1]
        packets.append(replace(p, frame=header.pack(family) + ip))
    return Capture(linktype, capture.snaplen, tuple(packets))


def to_dlt_null(capture: Capture) -> Capture:
    """macOS ``lo0`` framing: DLT_NULL, a 4-byte address family in host (here little-endian) order."""
    return _reframe(capture, LINKTYPE_NULL, struct.Struct("<I"), (AF_INET_BSD, AF_INET6_DARWIN))


def to_dlt_loop(capture: Capture) -> Capture:
    """OpenBSD loopback framing: DLT_LOOP, the address family big-endian (OpenBSD's AF_INET6 is 24)."""
    return _reframe(capture, LINKTYPE_LOOP, struct.Struct(">I"), (AF_INET_BSD, 24))


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
        out.insert(at, replace(copy, sec=out[at - 1].sec, usec=out[at - 1].usec))
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
        l4 = pcapgen.tcp(view.sport, view.dport, view.seq + offset, view.ack, view.flags, piece)
        ip = pcapgen.ipv6(view.src, view.dst, l4) if ":" in view.src else pcapgen.ipv4(view.src, view.dst, l4)
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


# =========================================================================== the workload
# The official ollama and openai clients against the emulator, and what each client received.

MODEL = "llama3.2:1b"
MISSING_MODEL = "nosuch:latest"
CLIENT_TIMEOUT_S = 30.0
# A long enough stream that a dropped segment or a capture window can land in its middle.
LONG_STREAM_TOKENS = 120
# A non-streamed body above Go's 2048-byte buffer: sent chunked although it is one JSON object.
BIG_BODY_TOKENS = 600
ERROR_AFTER = 5
PACING: dict[str, Any] = {"prefill_ms": 2.0, "token_ms": 1.0}


def missing_tools() -> str | None:
    """Why real captures cannot be made here, or None."""
    if os.geteuid() != 0:
        return "capturing on loopback needs root"
    for tool in ("tcpdump", "tshark", "editcap"):
        if shutil.which(tool) is None:
            return f"{tool} not installed"
    return None


def require_capture_tools() -> None:
    reason = missing_tools()
    if reason:
        pytest.skip(reason)


# --------------------------------------------------------------------------- what was sent and received


@dataclass
class Sent:
    """One request of the workload and what its client received."""

    name: str  # stable label (also the start of the unique prompt)
    prompt: str
    api: str
    kind: str
    model: str
    status: int
    stream: bool
    text: str = ""
    thinking: str = ""
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    done_reason: str | None = None
    complete: bool = True
    flags: tuple[str, ...] = ()
    error: str | None = None
    eval_count: int | None = None
    prompt_eval_count: int | None = None
    native_counters: bool = False  # Ollama's nanosecond durations expected
    tokens: tuple[str, ...] = ()  # the reply's tokens, as the emulator planned them
    connection: str = ""  # which client connection carried it ("ollama" / "openai")


@dataclass
class RealCapture:
    """A capture file, the Ollama port to analyze, and what every request sent during it got."""

    path: Path
    port: int
    sent: list[Sent]
    host: str = "127.0.0.1"

    def by_name(self, name: str) -> Sent:
        return next(s for s in self.sent if s.name == name)


def _prompt(name: str) -> str:
    return f"{name} {uuid.uuid4().hex[:10]}"


def run_ollama_workload(url: str, config: EmulatorConfig) -> list[Sent]:
    """The official ollama client on one keep-alive connection: streamed and big generates, a chat with
    thinking and tools, a 404 and a stream that fails midway (last: the client drops the connection)."""
    sent: list[Sent] = []
    client = ollama.Client(host=url, timeout=CLIENT_TIMEOUT_S)
    try:
        # 1. streamed generate
        prompt = _prompt("gen-stream")
        options = {"emulator_tokens": LONG_STREAM_TOKENS}
        body = {"model": MODEL, "prompt": prompt, "options": options}
        plan = plan_reply("generate", body, config)
        parts: list[str] = []
        final: ollama.GenerateResponse | None = None
        for chunk in client.generate(model=MODEL, prompt=prompt, stream=True, options=options):
            parts.append(chunk.response or "")
            final = chunk
        assert final is not None and final.done
        sent.append(
            Sent(
                "gen-stream",
                prompt,
                "ollama",
                "generate",
                MODEL,
                200,
                True,
                "".join(parts),
                done_reason=final.done_reason,
                eval_count=final.eval_count,
                prompt_eval_count=final.prompt_eval_count,
                native_counters=True,
                tokens=plan.content,
                connection="ollama",
            )
        )

        # 2. non-streamed generate, body > 2048 bytes (chunked although not a stream)
        prompt = _prompt("gen-big")
        options = {"emulator_tokens": BIG_BODY_TOKENS}
        reply = client.generate(model=MODEL, prompt=prompt, stream=False, options=options)
        plan = plan_reply("generate", {"model": MODEL, "prompt": prompt, "options": options}, config)
        sent.append(
            Sent(
                "gen-big",
                prompt,
                "ollama",
                "generate",
                MODEL,
                200,
                False,
                reply.response or "",
                done_reason=reply.done_reason,
                eval_count=reply.eval_count,
                prompt_eval_count=reply.prompt_eval_count,
                native_counters=True,
                tokens=plan.content,
                connection="ollama",
            )
        )

        # 3. streamed chat with thinking and a tool
        prompt = _prompt("chat-think-tools")
        messages = [{"role": "user", "content": prompt}]
        content: list[str] = []
        thinking: list[str] = []
        calls: list[dict[str, Any]] = []
        last: ollama.ChatResponse | None = None
        for piece in client.chat(model=MODEL, messages=messages, think=True, tools=[WEATHER_TOOL], stream=True):
            content.append(piece.message.content or "")
            thinking.append(piece.message.thinking or "")
            for call in piece.message.tool_calls or []:
                calls.append({"name": call.function.name, "arguments": dict(call.function.arguments)})
            last = piece
        assert last is not None and last.done
        plan = plan_reply(
            "chat", {"model": MODEL, "messages": messages, "think": True, "tools": [WEATHER_TOOL]}, config
        )
        sent.append(
            Sent(
                "chat-think-tools",
                prompt,
                "ollama",
                "chat",
                MODEL,
                200,
                True,
                "".join(content),
                thinking="".join(thinking),
                tool_calls=calls,
                done_reason=last.done_reason,
                eval_count=last.eval_count,
                prompt_eval_count=last.prompt_eval_count,
                native_counters=True,
                tokens=plan.content,
                connection="ollama",
            )
        )

        # 4. unknown model: 404 before any stream
        prompt = _prompt("missing-model")
        try:
            client.generate(model=MISSING_MODEL, prompt=prompt, stream=False)
        except ollama.ResponseError as exc:
            assert exc.status_code == 404
            error = exc.error
        else:
            raise AssertionError("the emulator answered an unknown model")
        sent.append(
            Sent(
                "missing-model",
                prompt,
                "ollama",
                "generate",
                MISSING_MODEL,
                404,
                False,
                "",
                error=error,
                connection="ollama",
            )
        )

        # 5. an error after a few tokens: status 200, then one {"error": ...} line
        prompt = _prompt("error-mid-stream")
        options = {"emulator_error_after": ERROR_AFTER}
        parts = []
        try:
            for chunk in client.generate(model=MODEL, prompt=prompt, stream=True, options=options):
                parts.append(chunk.response or "")
        except ollama.ResponseError as exc:
            error = exc.error
        else:
            raise AssertionError("the stream did not fail")
        plan = plan_reply("generate", {"model": MODEL, "prompt": prompt, "options": options}, config)
        sent.append(
            Sent(
                "error-mid-stream",
                prompt,
                "ollama",
                "generate",
                MODEL,
                200,
                True,
                "".join(parts),
                complete=False,
                flags=("error_mid_stream",),
                error=error,
                tokens=plan.content[:ERROR_AFTER],
                connection="ollama",
            )
        )
    finally:
        client._client.close()
    return sent


def run_openai_workload(url: str, config: EmulatorConfig) -> list[Sent]:
    """The official openai client on one keep-alive connection: a streamed chat with usage, a completion."""
    sent: list[Sent] = []
    client = openai.OpenAI(base_url=url + "/v1", api_key="ollama", max_retries=0, timeout=CLIENT_TIMEOUT_S)
    try:
        prompt = _prompt("openai-chat-stream")
        messages = [{"role": "user", "content": prompt}]
        parts, usage, finish = [], None, None
        stream = client.chat.completions.create(
            model=MODEL,
            messages=messages,
            stream=True,
            stream_options={"include_usage": True},  # type: ignore[call-overload]
        )
        for chunk in stream:
            if chunk.usage is not None:
                usage = chunk.usage
            for choice in chunk.choices:
                parts.append(choice.delta.content or "")
                finish = choice.finish_reason or finish
        assert usage is not None
        plan = plan_reply("openai_chat", {"model": MODEL, "messages": messages}, config)
        sent.append(
            Sent(
                "openai-chat-stream",
                prompt,
                "openai",
                "chat",
                MODEL,
                200,
                True,
                "".join(parts),
                done_reason=finish,
                eval_count=usage.completion_tokens,
                prompt_eval_count=usage.prompt_tokens,
                tokens=plan.content,
                connection="openai",
            )
        )

        prompt = _prompt("openai-completion")
        completion = client.completions.create(model=MODEL, prompt=prompt)
        assert completion.usage is not None
        plan = plan_reply("openai_completion", {"model": MODEL, "prompt": prompt}, config)
        sent.append(
            Sent(
                "openai-completion",
                prompt,
                "openai",
                "generate",
                MODEL,
                200,
                False,
                completion.choices[0].text,
                done_reason=completion.choices[0].finish_reason,
                eval_count=completion.usage.completion_tokens,
                prompt_eval_count=completion.usage.prompt_tokens,
                tokens=plan.content,
                connection="openai",
            )
        )
    finally:
        client.close()
    return sent


def run_workload(url: str, config: EmulatorConfig) -> list[Sent]:
    return run_ollama_workload(url, config) + run_openai_workload(url, config)


# --------------------------------------------------------------------------- session captures


@dataclass
class Workload:
    """One run of the workload with every capture made of it."""

    port: int
    host: str
    sent: list[Sent]
    files: dict[str, Path]

    def capture(self, name: str) -> RealCapture:
        return RealCapture(self.files[name], self.port, self.sent, self.host)


CAPTURE_ATTEMPTS = 3


def capture_workload(
    base: Path, host: str, ifaces: dict[str, str], traffic: Callable[[str, EmulatorConfig], list[Sent]] = run_workload
) -> Workload:
    """Start an emulator on ``host`` and capture its port on every ``ifaces`` (name → interface) at once.

    A capture the kernel dropped packets from (tcpdump's own count) is made again, a bounded number
    of times: the tests need whole captures, and make their holes themselves.
    """
    config = EmulatorConfig(**PACING)
    runs: list[TcpdumpRun] = []
    for _attempt in range(CAPTURE_ATTEMPTS):
        with EmulatorThread(config, host=host) as emulator, contextlib.ExitStack() as stack:
            runs = [
                stack.enter_context(tcpdump(base / f"{name}.pcap", f"tcp port {emulator.port}", iface))
                for name, iface in ifaces.items()
            ]
            sent = traffic(emulator.url, config)
        if all(run.dropped == 0 for run in runs):
            return Workload(emulator.port, host, sent, {name: base / f"{name}.pcap" for name in ifaces})
    raise CaptureFailed("tcpdump kept losing packets: " + " / ".join(run.stderr for run in runs))


# The capture shapes of the same traffic (see conftest.capture_shapes).
SHAPES = ("lo4", "lo6", "any4", "pcapng4", "null4", "null6", "loop4", "loop6")


@dataclass
class ProxyCapture:
    """Both legs of client → mitmdump → emulator on lo, and the addon's log of the same requests."""

    path: Path
    emulator_port: int
    proxy_port: int
    sent: list[Sent]
    log_dir: Path


def make_proxy_capture(base: Path) -> ProxyCapture:
    """The workload through a real ``mitmdump -s addons/ollama_log.py`` in front of the emulator, captured
    on lo (both legs); mitmdump is stopped (SIGINT: the addon flushes) before the log is read."""
    config = EmulatorConfig(**PACING)
    log_dir = base / "proxy-log"
    path = base / "proxy.pcap"
    with (
        EmulatorThread(config) as emulator,
        MitmdumpProcess(emulator.url, options={"ollama_log_dir": str(log_dir)}) as proxy,
        tcpdump(path, f"tcp port {emulator.port} or tcp port {proxy.port}") as run,
    ):
        sent = run_workload(proxy.url, config)
    if run.dropped != 0:
        raise CaptureFailed(f"tcpdump lost packets: {run.stderr}")
    return ProxyCapture(path, emulator.port, proxy.port, sent, log_dir)
