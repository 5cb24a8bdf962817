"""The replay's HTTP/1.1 client: asyncio sockets, every fragment timestamped as it arrives and fed to the same
``InteractionBuilder`` the recorder uses — so a replayed record is measured exactly as a recorded one.

One connection per request (``Connection: close``), TCP_NODELAY, the body sent in the same write as the head.
``started_at`` is the moment that write is handed to the kernel; the response's first byte, each de-chunked body
fragment and the last byte are stamped when ``read`` returns them.
"""

from __future__ import annotations

import asyncio
import os
import socket
import ssl
import time
import uuid
from dataclasses import dataclass
from urllib.parse import urlsplit

from analyzer.protocol.interaction import InteractionBuilder
from analyzer.protocol.record import (
    FLAG_CLIENT_ABORTED,
    FLAG_NO_RESPONSE,
    FLAG_UPSTREAM_FAILED,
    InteractionRecord,
    format_address,
)
from analyzer.replay.plan import PlannedRequest

READ_BYTES = 64 * 1024
MAX_HEAD_BYTES = 64 * 1024
IDLE_TIMEOUT_S = 600.0  # a target that sends nothing for this long has failed
CONNECT_TIMEOUT_S = 10.0
USER_AGENT = "ollama-wire-replay"


class TargetError(ValueError):
    """A ``--target`` that is not an http(s) URL."""


@dataclass(frozen=True)
class Target:
    """Where a replay sends: scheme, host, port (the URL's path prefix is not used: Ollama's paths are absolute)."""

    scheme: str
    host: str
    port: int

    @property
    def address(self) -> str:
        return format_address(self.host, self.port)

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.address}"


def parse_target(url: str) -> Target:
    """``http://127.0.0.1:11435`` → Target; TargetError (naming the value) for anything else."""
    text = url.strip()
    if "://" not in text:
        text = "http://" + text
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise TargetError(f"--target {url!r}: expected an http:// or https:// URL with a host")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as exc:
        raise TargetError(f"--target {url!r}: {exc}") from None
    return Target(parts.scheme, parts.hostname, port)


def why(exc: OSError) -> str:
    """The system's words for a socket error (``Connection refused``), not asyncio's ``Connect call failed (…)``."""
    return os.strerror(exc.errno) if exc.errno else str(exc)


class _Dechunker:
    """Incremental HTTP/1.1 chunked decoding: ``feed`` returns the body bytes in what arrived; ``done`` at the end."""

    def __init__(self) -> None:
        self._buffer = b""
        self._remaining = 0
        self._state = "size"  # size | data | data_end | trailer | done
        self.done = False
        self.malformed = False

    def feed(self, data: bytes) -> list[bytes]:
        self._buffer += data
        out: list[bytes] = []
        while not self.done and not self.malformed:
            if self._state == "size":
                end = self._buffer.find(b"\r\n")
                if end < 0:
                    break
                line, self._buffer = self._buffer[:end], self._buffer[end + 2 :]
                try:
                    self._remaining = int(line.split(b";", 1)[0].strip(), 16)
                except ValueError:
                    self.malformed = True
                    break
                self._state = "data" if self._remaining else "trailer"
            elif self._state == "data":
                if not self._buffer:
                    break
                piece, self._buffer = self._buffer[: self._remaining], self._buffer[self._remaining :]
                self._remaining -= len(piece)
                out.append(piece)
                if not self._remaining:
                    self._state = "data_end"
            elif self._state == "data_end":
                if len(self._buffer) < 2:
                    break
                self._buffer = self._buffer[2:]
                self._state = "size"
            else:  # trailer lines until an empty one
                end = self._buffer.find(b"\r\n")
                if end < 0:
                    break
                line, self._buffer = self._buffer[:end], self._buffer[end + 2 :]
                if not line:
                    self.done = True
        return out


def _head_bytes(planned: PlannedRequest, target: Target) -> bytes:
    lines = [f"{planned.method} {planned.path} HTTP/1.1", f"Host: {target.address}", f"User-Agent: {USER_AGENT}"]
    if planned.method not in ("GET", "HEAD") or planned.body:
        lines.append(f"Content-Type: {planned.content_type or 'application/json'}")
        lines.append(f"Content-Length: {len(planned.body)}")
    lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def _parse_head(head: bytes) -> tuple[int | None, dict[str, str]]:
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    status = int(parts[1]) if len(parts) >= 2 and parts[1].isdigit() else None
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    return status, headers


async def send_request(planned: PlannedRequest, target: Target, not_before: float | None = None) -> InteractionRecord:
    """Send ``planned`` to ``target`` and return the record of the exchange (``source: replay``). With
    ``not_before`` (the event loop's clock) the connection is made first and the request written at that moment,
    so connecting does not delay the recorded arrival pattern.

    Never raises for the target's behaviour: a refused connection, a reset or a timeout is the record's
    ``error`` with ``no_response`` / ``upstream_failed``. Cancelling (Ctrl-C) closes the connection and propagates.
    """
    builder = InteractionBuilder(source="replay", server=target.address, record_id=uuid.uuid4().hex)
    headers = {"content-type": planned.content_type or "application/json"}
    writer: asyncio.StreamWriter | None = None
    try:
        context = ssl.create_default_context() if target.scheme == "https" else None
        try:
            reader, connected = await asyncio.wait_for(
                asyncio.open_connection(target.host, target.port, ssl=context, limit=MAX_HEAD_BYTES),
                CONNECT_TIMEOUT_S,
            )
        except (OSError, TimeoutError) as exc:
            at = time.time()
            builder.request_started(at, planned.method, planned.path, headers)
            builder.request_body(planned.body, at)
            builder.add_flags([FLAG_NO_RESPONSE])
            reason = "timed out" if isinstance(exc, TimeoutError) else why(exc)
            return builder.finish(at, error=f"cannot connect to {target.url}: {reason}")
        writer = connected
        sock = connected.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            local = sock.getsockname()
            builder.client = format_address(local[0], local[1])
        if not_before is not None:
            wait = not_before - asyncio.get_running_loop().time()
            if wait > 0:
                await asyncio.sleep(wait)
        at = time.time()
        connected.write(_head_bytes(planned, target) + planned.body)
        builder.request_started(at, planned.method, planned.path, headers)
        if planned.body:
            builder.request_body(planned.body, at)
        await connected.drain()
        return await _read_response(reader, builder, head_only=planned.method == "HEAD")
    except asyncio.CancelledError:
        builder.add_flags([FLAG_CLIENT_ABORTED])
        raise
    finally:
        if writer is not None:
            writer.close()


async def _read_response(
    reader: asyncio.StreamReader, builder: InteractionBuilder, *, head_only: bool
) -> InteractionRecord:
    buffer = b""
    dechunker: _Dechunker | None = None
    remaining: int | None = None  # Content-Length left; None: until the connection closes
    started = False
    at = time.time()
    while True:
        try:
            data = await asyncio.wait_for(reader.read(READ_BYTES), IDLE_TIMEOUT_S)
        except (OSError, TimeoutError) as exc:
            at = time.time()
            builder.add_flags([FLAG_UPSTREAM_FAILED if started else FLAG_NO_RESPONSE])
            reason = f"no data for {IDLE_TIMEOUT_S:.0f} s" if isinstance(exc, TimeoutError) else str(exc)
            return builder.finish(at, error=f"target: {reason}")
        at = time.time()
        if not data:
            break
        if not started:
            buffer += data
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(buffer) > MAX_HEAD_BYTES:
                    builder.add_flags([FLAG_NO_RESPONSE])
                    return builder.finish(at, error="target: response head too large")
                continue
            status, headers = _parse_head(buffer[:end])
            data, buffer = buffer[end + 4 :], b""
            if status is not None and 100 <= status < 200:  # an interim response: the real one follows
                buffer = data
                continue
            started = True
            builder.response_started(at, status, headers)
            if head_only or status in (204, 304):
                return builder.finish(at)
            if "chunked" in headers.get("transfer-encoding", "").lower():
                dechunker = _Dechunker()
            elif headers.get("content-length", "").isdigit():
                remaining = int(headers["content-length"])
            if remaining == 0:
                return builder.finish(at)
        if dechunker is not None:
            for piece in dechunker.feed(data):
                builder.response_body(piece, at)
            if dechunker.done:
                return builder.finish(at)
            if dechunker.malformed:
                builder.add_flags([FLAG_UPSTREAM_FAILED])
                return builder.finish(at, error="target: malformed chunked body")
        elif remaining is not None:
            piece = data[:remaining]
            builder.response_body(piece, at)
            remaining -= len(piece)
            if remaining <= 0:
                return builder.finish(at)
        elif data:
            builder.response_body(data, at)
    # the connection closed
    if not started:
        builder.add_flags([FLAG_NO_RESPONSE])
        return builder.finish(at, error="target closed the connection without answering")
    if dechunker is not None or remaining is not None:
        builder.add_flags([FLAG_UPSTREAM_FAILED])
        return builder.finish(at, error="target closed the connection mid-response")
    return builder.finish(at)


async def probe(target: Target) -> str | None:
    """None when ``target`` accepts a connection, else why not (one short phrase)."""
    try:
        context = ssl.create_default_context() if target.scheme == "https" else None
        _, writer = await asyncio.wait_for(
            asyncio.open_connection(target.host, target.port, ssl=context), CONNECT_TIMEOUT_S
        )
    except TimeoutError:
        return f"no answer within {CONNECT_TIMEOUT_S:.0f} s"
    except OSError as exc:  # ssl.SSLError is one too
        return why(exc)
    writer.close()
    return None
