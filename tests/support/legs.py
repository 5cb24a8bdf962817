"""The HTTP exchanges of one port in a capture, byte for byte: request line, response status, header list and the
chunks exactly as framed on the wire (test tooling: compares the proxy's two legs and real vs emulated servers).

Built on the product's TCP reassembly (``analyzer.pcap``); HTTP here is parsed strictly and simply (HTTP/1.1,
``Content-Length`` or chunked, no pipelining), which is all Ollama, the emulator and mitmproxy produce.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from analyzer.pcap.captures import iter_packets
from analyzer.pcap.linklayer import segments_from_packets
from analyzer.pcap.tcp import ConnectionKey, TcpReassembler

MAX_MESSAGES = 10_000  # per connection and direction: the bound of every parse loop


@dataclass
class WireMessage:
    """One request or response as framed on the wire."""

    first_line: str
    headers: list[tuple[str, str]]
    chunks: list[bytes] = field(default_factory=list)  # chunked: each chunk's data; else one element (the body)
    chunked: bool = False
    ended: bool = True  # False when the capture holds no terminating chunk

    @property
    def body(self) -> bytes:
        return b"".join(self.chunks)

    def header(self, name: str) -> str | None:
        return next((v for n, v in self.headers if n.lower() == name.lower()), None)


@dataclass
class WireExchange:
    client: str  # ip:port
    started: float  # first request byte
    request: WireMessage
    response: WireMessage | None


class _Sink:
    def __init__(self, key: ConnectionKey, ts: float) -> None:
        self.key, self.ts = key, ts
        self.data = {True: bytearray(), False: bytearray()}
        self.starts: list[float] = []  # time of each request's first byte (a new request after a response)
        self._last_from_client: bool | None = None

    def on_data(self, from_client: bool, ts: float, data: bytes) -> None:
        if from_client and self._last_from_client is not True:
            self.starts.append(ts)
        self._last_from_client = from_client
        self.data[from_client] += data

    def on_gap(self, from_client: bool, ts: float, size: int) -> None:
        raise AssertionError(f"capture lost {size} bytes on {self.key}: no byte-exact comparison possible")

    def on_end(self, from_client: bool, ts: float) -> None:
        pass

    def on_close(self, ts: float, reason: str, reset_by_client: bool = False) -> None:
        pass


def _messages(data: bytes, responses: bool) -> list[WireMessage]:
    out: list[WireMessage] = []
    pos = 0
    while pos < len(data) and len(out) < MAX_MESSAGES:
        end = data.index(b"\r\n\r\n", pos)
        lines = data[pos:end].decode("latin-1").split("\r\n")
        headers = [(n.strip(), v.strip()) for n, _, v in (line.partition(":") for line in lines[1:])]
        msg = WireMessage(lines[0], headers)
        pos = end + 4
        if "chunked" in (msg.header("Transfer-Encoding") or "").lower():
            msg.chunked = True
            for _ in range(1_000_000):
                line_end = data.find(b"\r\n", pos)
                if line_end < 0:  # the client hung up before the last chunk (the openai client after [DONE])
                    msg.ended = False
                    pos = len(data)
                    break
                size = int(data[pos:line_end].split(b";")[0], 16)
                pos = line_end + 2
                if size == 0:
                    pos = data.find(b"\r\n", pos) + 2 or len(data)  # no trailers here
                    break
                msg.chunks.append(bytes(data[pos : pos + size]))
                pos += size + 2
        else:
            length = int(msg.header("Content-Length") or 0)
            if responses and msg.header("Content-Length") is None and " 204 " not in lines[0] + " ":
                length = len(data) - pos  # close-delimited
            msg.chunks = [bytes(data[pos : pos + length])]
            pos += length
        out.append(msg)
    return out


def exchanges(capture: Path, port: int) -> list[WireExchange]:
    """Every HTTP exchange with ``port`` (the server side) in ``capture``, by start time."""
    sinks: list[_Sink] = []

    def factory(key: ConnectionKey, ts: float, syn_seen: bool) -> _Sink:
        sinks.append(_Sink(key, ts))
        return sinks[-1]

    reassembler = TcpReassembler({port}, factory)
    for segment in segments_from_packets(iter_packets(str(capture)), {port}):
        reassembler.feed(segment)
    reassembler.finish()
    found: list[WireExchange] = []
    for sink in sinks:
        requests = _messages(bytes(sink.data[True]), responses=False)
        responses = _messages(bytes(sink.data[False]), responses=True)
        client = f"{sink.key[0]}:{sink.key[1]}"
        for i, request in enumerate(requests):
            started = sink.starts[i] if i < len(sink.starts) else sink.ts
            found.append(WireExchange(client, started, request, responses[i] if i < len(responses) else None))
    return sorted(found, key=lambda e: e.started)
