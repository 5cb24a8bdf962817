"""The asyncio server: one task per connection, many requests per connection, routed like Ollama's gin."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import socket
import time
from collections.abc import Awaitable, Callable

from analyzer.emulator import anthropic, native_generate, native_misc, offline, openai_compat, responses
from analyzer.emulator.config import EmulatorConfig
from analyzer.emulator.http11 import BadRequest, Request, ResponseWriter, read_request, send_bad_request
from analyzer.emulator.replies import RequestFailed, send_error
from analyzer.emulator.state import ServerState

Handler = Callable[[ServerState, Request, ResponseWriter], Awaitable[None]]

ROUTES: dict[tuple[str, str], Handler] = {
    ("GET", "/"): native_misc.root,
    ("HEAD", "/"): native_misc.root,
    ("GET", "/api/version"): native_misc.version,
    ("HEAD", "/api/version"): native_misc.version,
    ("GET", "/api/tags"): native_misc.tags,
    ("HEAD", "/api/tags"): native_misc.tags,
    ("GET", "/api/ps"): native_misc.ps,
    ("POST", "/api/show"): native_misc.show,
    ("POST", "/api/generate"): native_generate.generate,
    ("POST", "/api/chat"): native_generate.chat,
    ("POST", "/api/embed"): native_misc.embed,
    ("POST", "/api/embeddings"): native_misc.embeddings,
    ("POST", "/api/pull"): native_misc.pull,
    ("POST", "/api/push"): native_misc.push,
    ("POST", "/api/create"): native_misc.create,
    ("POST", "/v1/chat/completions"): openai_compat.chat_completions,
    ("POST", "/v1/completions"): openai_compat.completions,
    ("POST", "/v1/embeddings"): openai_compat.embeddings,
    ("GET", "/v1/models"): openai_compat.models,
    # today's Ollama: the Anthropic and Responses middlewares, and the endpoints an offline server refuses
    ("POST", "/v1/messages"): anthropic.messages,
    ("POST", "/v1/responses"): responses.responses,
    ("GET", "/api/status"): offline.status,
    ("POST", "/api/experimental/web_search"): offline.web_search,
    ("POST", "/api/experimental/web_fetch"): offline.web_fetch,
    ("GET", "/api/experimental/model-recommendations"): offline.recommendations,
    ("POST", "/api/me"): offline.whoami,
    ("POST", "/api/signout"): offline.signout,
    ("POST", "/v1/images/generations"): offline.images,
    ("POST", "/v1/images/edits"): offline.images,
    ("POST", "/v1/audio/transcriptions"): offline.transcriptions,
}

MAX_REQUESTS_PER_CONNECTION = 100_000
READ_LIMIT = 1024 * 1024


def route(method: str, path: str) -> Handler | None:
    """The handler for ``method path``, or None (answered with gin's plain-text 404)."""
    handler = ROUTES.get((method, path))
    if handler is None and method == "GET" and path.startswith("/v1/models/"):
        return openai_compat.model
    if handler is None and method == "DELETE" and path.startswith("/api/user/keys/"):
        return offline.signout
    return handler


async def _not_found(state: ServerState, request: Request, response: ResponseWriter) -> None:
    await response.send(404, "text/plain", b"404 page not found")


def log_body(path: str, request: Request) -> None:
    """Append what arrived to the body log (``--body-log``): when, method, path, body size and sha256 — so a test
    can tell that a client sent byte-identical bodies, and when, without keeping the prompts themselves."""
    line = json.dumps(
        {
            "at": time.time(),
            "method": request.method,
            "path": request.target,
            "bytes": len(request.body),
            "sha256": hashlib.sha256(request.body).hexdigest(),
        }
    )
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, (line + "\n").encode())
    finally:
        os.close(fd)


class EmulatorServer:
    """An emulated ``ollama serve`` bound to one address, run on the current event loop."""

    def __init__(self, config: EmulatorConfig | None = None) -> None:
        self.config = config or EmulatorConfig()
        self.state = ServerState(self.config)
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> int:
        """Bind and start accepting; returns the bound port. Raises OSError when the port is busy."""
        self._server = await asyncio.start_server(self._connection, host, port, limit=READ_LIMIT)
        return int(self._server.sockets[0].getsockname()[1])

    async def close(self) -> None:
        """Stop accepting, cut open connections, and wait for their tasks to end."""
        if self._server is not None:
            self._server.close()
        for task in list(self._connections):
            task.cancel()
        if self._connections:
            await asyncio.gather(*self._connections, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._connections.add(task)
        sock = writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            await self._serve_requests(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError):
            pass
        finally:
            if task is not None:
                self._connections.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _serve_requests(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        for _ in range(MAX_REQUESTS_PER_CONNECTION):
            try:
                request = await read_request(reader, writer)
            except BadRequest as exc:
                await send_bad_request(writer, exc)
                return
            if request is None:
                return
            if self.config.body_log:
                log_body(self.config.body_log, request)
            response = ResponseWriter(request, writer)
            handler = route(request.method, request.path) or _not_found
            try:
                await handler(self.state, request, response)
            except RequestFailed as exc:
                if response.started:
                    raise
                await send_error(response, exc, openai=request.path.startswith("/v1/"))
            except Exception as exc:  # a bug here must not look like a hung server to the client
                if not response.started:
                    error = RequestFailed(500, f"emulator error: {exc!r}")
                    await send_error(response, error, openai=request.path.startswith("/v1/"))
                return
            if not response.keep_alive:
                return
