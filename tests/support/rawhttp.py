"""The one raw HTTP/1.1 client for tests: exact request bytes, responses read off the socket with every
chunk boundary kept, keep-alive connections, bounded loops everywhere.

- :func:`request_bytes` builds a request; :class:`HttpConnection` sends it and reads :class:`RawResponse`;
- :func:`raw_exchange` does one request on a fresh ``Connection: close`` connection.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from analyzer.protocol.record import format_address

TIMEOUT_S = 30.0
MAX_READS = 100_000  # the bound of every read loop (each read is up to 64 KiB)


@dataclass
class RawResponse:
    """One response as it came off the wire: head, body (de-chunked) and, if chunked, each chunk."""

    status: int
    version: str = "HTTP/1.1"
    header_names: list[str] = field(default_factory=list)
    headers: dict[str, str] = field(default_factory=dict)  # lower-case names
    chunks: list[bytes] = field(default_factory=list)
    body: bytes = b""
    complete: bool = True  # False when the connection closed before the body's end

    @property
    def chunked(self) -> bool:
        return "chunked" in self.headers.get("transfer-encoding", "").lower()

    def json(self) -> Any:
        return json.loads(self.body)

    def ndjson(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.body.splitlines() if line.strip()]


def request_bytes(
    method: str,
    path: str,
    body: Any = None,
    *,
    host: str = "test",
    headers: dict[str, str] | None = None,
    close: bool = False,
) -> bytes:
    """``METHOD PATH HTTP/1.1`` with Host, the given headers, and a JSON (or raw bytes) body with its length."""
    payload = b"" if body is None else body if isinstance(body, bytes) else json.dumps(body).encode()
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}"]
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    if body is not None:
        if not isinstance(body, bytes):
            lines.append("Content-Type: application/json")
        lines.append(f"Content-Length: {len(payload)}")
    if close:
        lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + payload


class HttpConnection:
    """A raw (keep-alive) connection: send bytes, read heads, chunks and whole responses."""

    def __init__(self, host: str, port: int, timeout_s: float = TIMEOUT_S) -> None:
        self.host, self.port = host, port
        self.sock = socket.create_connection((host, port), timeout=timeout_s)
        self.buffer = b""

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def request(self, method: str, path: str, body: Any = None, **headers: str) -> RawResponse:
        """Send a request (``content_type="x"`` → ``content-type: x``) and read its response."""
        named = {name.replace("_", "-"): value for name, value in headers.items()}
        self.send(request_bytes(method, path, body, host=format_address(self.host, self.port), headers=named))
        return self.read_response(method)

    def _fill(self) -> bool:
        data = self.sock.recv(65536)
        self.buffer += data
        return bool(data)

    def read_until(self, sep: bytes) -> bytes:
        """Up to and including ``sep``; ConnectionError when the peer closes first."""
        for _ in range(MAX_READS):
            cut = self.buffer.find(sep)
            if cut >= 0:
                line, self.buffer = self.buffer[: cut + len(sep)], self.buffer[cut + len(sep) :]
                return line
            if not self._fill():
                raise ConnectionError(f"connection closed before {sep!r}")
        raise AssertionError(f"no {sep!r} after {MAX_READS} reads")

    def read_exactly(self, size: int) -> bytes:
        for _ in range(MAX_READS):
            if len(self.buffer) >= size:
                data, self.buffer = self.buffer[:size], self.buffer[size:]
                return data
            if not self._fill():
                raise ConnectionError("connection closed mid-body")
        raise AssertionError(f"body incomplete after {MAX_READS} reads")

    def read_to_close(self) -> bytes:
        for _ in range(MAX_READS):
            if not self._fill():
                break
        data, self.buffer = self.buffer, b""
        return data

    def read_head(self) -> RawResponse:
        """The status line and headers (the body is not read)."""
        lines = self.read_until(b"\r\n\r\n").decode("latin-1").split("\r\n")
        version, status = lines[0].split(" ")[:2]
        response = RawResponse(int(status), version)
        for line in lines[1:]:
            if line:
                name, _, value = line.partition(":")
                response.header_names.append(name)
                response.headers[name.strip().lower()] = value.strip()
        return response

    def chunks(self) -> Iterator[bytes]:
        """The de-chunked pieces of a chunked body, one per HTTP chunk, as they arrive."""
        for _ in range(MAX_READS):
            size = int(self.read_until(b"\r\n").split(b";")[0], 16)
            if size == 0:
                self.read_until(b"\r\n")
                return
            yield self.read_exactly(size)
            if self.read_until(b"\r\n") != b"\r\n":
                raise AssertionError("chunk data longer than its size line")
        raise AssertionError(f"more than {MAX_READS} chunks")

    def read_response(self, method: str = "GET") -> RawResponse:
        """A whole response; a chunked body keeps its chunk boundaries (``complete`` False if cut short)."""
        response = self.read_head()
        if method == "HEAD":
            return response
        if response.chunked:
            try:
                for chunk in self.chunks():
                    response.chunks.append(chunk)
            except ConnectionError:
                response.complete = False
            response.body = b"".join(response.chunks)
        elif "content-length" in response.headers:
            response.body = self.read_exactly(int(response.headers["content-length"]))
        else:
            response.body = self.read_to_close()
        return response

    def at_eof(self) -> bool:
        """Whether the server closed the connection (nothing buffered, nothing more to read)."""
        return not self.buffer and not self._fill()

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> HttpConnection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def raw_exchange(address: tuple[str, int], method: str, path: str, body: Any = None) -> RawResponse:
    """One request on a fresh connection (``Connection: close``); the response with its chunks."""
    with HttpConnection(*address) as conn:
        conn.send(request_bytes(method, path, body, host=format_address(*address), close=True))
        return conn.read_response(method)
