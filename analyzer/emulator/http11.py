"""A small HTTP/1.1 server layer that frames responses exactly like Go's net/http.

Go writes the handler's headers sorted, then ``Date``, then ``Content-Length`` or ``Transfer-Encoding``;
buffers bodies up to 2048 bytes (Content-Length) and chunks anything larger; sends the headers together
with the first flushed chunk; and sends ``Connection: close`` only to HTTP/1.1 clients it will hang up on.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from http import HTTPStatus

from analyzer.emulator.wire import http_date

GO_BUFFER_BEFORE_CHUNKING = 2048
MAX_HEADER_LINES = 100
MAX_BODY_BYTES = 64 * 1024 * 1024
MAX_CHUNKS = 1_000_000


class BadRequest(Exception):
    """The bytes on the connection are not a request we can answer; the connection is closed after."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class Request:
    """A parsed request. Header names are lower-cased; ``body`` is de-chunked."""

    method: str
    target: str
    version: str
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""

    @property
    def path(self) -> str:
        """The target without its query string."""
        return self.target.split("?", 1)[0]

    @property
    def keep_alive(self) -> bool:
        """HTTP/1.1 keeps the connection unless ``Connection: close``; HTTP/1.0 always closes."""
        tokens = {t.strip().lower() for t in self.headers.get("connection", "").split(",")}
        return self.version == "HTTP/1.1" and "close" not in tokens


async def _read_line(reader: asyncio.StreamReader) -> bytes:
    try:
        line = await reader.readuntil(b"\n")
    except asyncio.LimitOverrunError as exc:
        raise BadRequest(431, "line too long") from exc
    return line.rstrip(b"\r\n")


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    parts: list[bytes] = []
    total = 0
    for _ in range(MAX_CHUNKS):
        size_line = (await _read_line(reader)).split(b";", 1)[0].strip()
        try:
            size = int(size_line, 16)
        except ValueError as exc:
            raise BadRequest(400, "bad chunk size") from exc
        if size == 0:
            for _ in range(MAX_HEADER_LINES):  # trailers, ignored
                if not await _read_line(reader):
                    return b"".join(parts)
            raise BadRequest(400, "too many trailers")
        total += size
        if total > MAX_BODY_BYTES:
            raise BadRequest(413, "request body too large")
        parts.append(await reader.readexactly(size))
        if await _read_line(reader):
            raise BadRequest(400, "malformed chunk")
    raise BadRequest(400, "too many chunks")


async def read_request(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> Request | None:
    """Read one request; None when the peer closed the connection cleanly between requests."""
    try:
        line = await reader.readuntil(b"\n")
    except asyncio.IncompleteReadError:
        return None
    except asyncio.LimitOverrunError as exc:
        raise BadRequest(431, "request line too long") from exc
    parts = line.decode("latin-1").strip().split(" ")
    if len(parts) != 3 or parts[2] not in ("HTTP/1.0", "HTTP/1.1"):
        raise BadRequest(400, "malformed request line")
    request = Request(method=parts[0], target=parts[1], version=parts[2])
    for _ in range(MAX_HEADER_LINES):
        header = await _read_line(reader)
        if not header:
            break
        name, sep, value = header.decode("latin-1").partition(":")
        if not sep or not name.strip():
            raise BadRequest(400, "malformed header")
        request.headers[name.strip().lower()] = value.strip()
    else:
        raise BadRequest(431, "too many headers")
    if request.headers.get("expect", "").lower() == "100-continue":
        writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
    if "chunked" in request.headers.get("transfer-encoding", "").lower():
        request.body = await _read_chunked(reader)
    elif "content-length" in request.headers:
        try:
            length = int(request.headers["content-length"])
        except ValueError as exc:
            raise BadRequest(400, "bad Content-Length") from exc
        if length < 0 or length > MAX_BODY_BYTES:
            raise BadRequest(413, "request body too large")
        request.body = await reader.readexactly(length)
    return request


def _status_line(version: str, status: int) -> str:
    try:
        reason = HTTPStatus(status).phrase
    except ValueError:
        reason = "status code " + str(status)
    return f"{'HTTP/1.1' if version == 'HTTP/1.1' else 'HTTP/1.0'} {status} {reason}\r\n"


class ResponseWriter:
    """Writes one response to one request. Every chunk is a single ``write`` followed by ``drain``."""

    def __init__(self, request: Request, writer: asyncio.StreamWriter) -> None:
        self.request = request
        self.writer = writer
        self.keep_alive = request.keep_alive
        self.started = False
        self._pending_head: bytes | None = None
        self._chunked = False

    def _head(self, status: int, headers: dict[str, str], framing: dict[str, str]) -> bytes:
        lines = [_status_line(self.request.version, status)]
        lines += [f"{name}: {value}\r\n" for name, value in sorted(headers.items())]
        lines.append(f"Date: {http_date()}\r\n")
        if "Content-Length" in framing:
            lines.append(f"Content-Length: {framing['Content-Length']}\r\n")
        if not self.keep_alive and self.request.version == "HTTP/1.1":
            lines.append("Connection: close\r\n")
        if "Transfer-Encoding" in framing:
            lines.append(f"Transfer-Encoding: {framing['Transfer-Encoding']}\r\n")
        lines.append("\r\n")
        return "".join(lines).encode("latin-1")

    async def _write(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def send(self, status: int, content_type: str, body: bytes) -> None:
        """Send a complete response: Content-Length up to 2048 bytes, one chunk above (as Go does)."""
        self.started = True
        headers = {"Content-Type": content_type}
        is_head = self.request.method == "HEAD"
        if len(body) <= GO_BUFFER_BEFORE_CHUNKING:
            head = self._head(status, headers, {"Content-Length": str(len(body))})
            await self._write(head + (b"" if is_head else body))
        elif is_head:
            await self._write(self._head(status, headers, {}))
        elif self.request.version == "HTTP/1.1":
            head = self._head(status, headers, {"Transfer-Encoding": "chunked"})
            await self._write(head + b"%x\r\n" % len(body) + body + b"\r\n0\r\n\r\n")
        else:
            self.keep_alive = False
            await self._write(self._head(status, headers, {}) + body)

    def start_stream(self, status: int, content_type: str) -> None:
        """Prepare a streamed response; the headers go out with the first chunk, like a Go flush."""
        self.started = True
        self._chunked = self.request.version == "HTTP/1.1"
        if not self._chunked:
            self.keep_alive = False  # HTTP/1.0: the end of the body is the end of the connection
        framing = {"Transfer-Encoding": "chunked"} if self._chunked else {}
        self._pending_head = self._head(status, {"Content-Type": content_type}, framing)

    async def write_chunk(self, data: bytes) -> None:
        """Send ``data`` as one HTTP chunk (headers first if still pending) and wait until it is flushed."""
        frame = b"%x\r\n%b\r\n" % (len(data), data) if self._chunked else data
        if self._pending_head is not None:
            frame, self._pending_head = self._pending_head + frame, None
        await self._write(frame)

    async def end_stream(self) -> None:
        """Finish a streamed response with the terminating zero-size chunk."""
        tail = b"0\r\n\r\n" if self._chunked else b""
        if self._pending_head is not None:
            tail, self._pending_head = self._pending_head + tail, None
        if tail:
            await self._write(tail)

    def abort(self) -> None:
        """Drop the connection mid-response without finishing the body."""
        self.keep_alive = False
        self.writer.transport.abort()


async def send_bad_request(writer: asyncio.StreamWriter, error: BadRequest) -> None:
    """Go's reply to an unreadable request: plain text status, then close."""
    reason = HTTPStatus(error.status).phrase
    writer.write(
        f"HTTP/1.1 {error.status} {reason}\r\nContent-Type: text/plain; charset=utf-8\r\n"
        f"Connection: close\r\n\r\n{error.status} {reason}".encode()
    )
    await writer.drain()
