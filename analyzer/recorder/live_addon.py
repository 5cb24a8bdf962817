"""The live-feed addon: publishes what the recorder sees, as it happens, on a local Unix socket.

On by default (``ollama_live`` empty = ``$XDG_RUNTIME_DIR/ollama-wire/live.sock`` or the user's cache
directory); ``ollama_live=off`` turns it off, any other value is the socket path. ``ollama-wire top`` finds the
default socket by itself. The feed watches the recorder through its observer hub and never touches a flow:
a feed that cannot start is one warning, and the traffic goes on recorded as before.
"""

from __future__ import annotations

import asyncio
import logging

from mitmproxy import ctx, exceptions, http

from analyzer.live.paths import path_problem, socket_path
from analyzer.live.publisher import LiveError, LivePublisher
from analyzer.protocol.interaction import InteractionBuilder
from analyzer.protocol.observer import ObserverHub
from analyzer.protocol.record import format_address
from analyzer.recorder.addon import OllamaLog

logger = logging.getLogger(__name__)
OPTION = "ollama_live"


def option_problem(name: str, value: object) -> str | None:
    """What is wrong with ``value`` for this addon's option, or None (also for other options)."""
    return path_problem(str(value)) if name == OPTION else None


def request_builder(flow: http.HTTPFlow) -> InteractionBuilder:
    """A builder that knows only the request, for the feed's ``start`` of a request still waiting."""
    request = flow.request
    peer = flow.client_conn.peername
    builder = InteractionBuilder(
        source="proxy",
        client=format_address(str(peer[0]), int(peer[1])) if peer else "",
        server=format_address(request.host, request.port),
        record_id=flow.id,
        redaction=ctx.options.ollama_redact,
    )
    builder.request_started(request.timestamp_start, request.method, request.path, {})
    if request.raw_content:
        builder.request_body(request.raw_content, request.timestamp_end or request.timestamp_start)
    return builder


class LiveFeed:
    """Owns one :class:`LivePublisher` for the life of the proxy; re-binds when ``ollama_live`` changes."""

    OPTIONS = (OPTION,)

    def __init__(self, hub: ObserverHub, recorder: OllamaLog | None = None) -> None:
        self.hub = hub
        self.recorder = recorder  # tells which flows are Ollama's (its ollama_hosts/ollama_extra_paths)
        self.publisher: LivePublisher | None = None
        self.problem: str | None = None
        self._running = False

    def load(self, loader) -> None:
        loader.add_option(
            "ollama_live",  # = OPTION
            str,
            "",
            "Live feed for `ollama-wire top`: a Unix socket (mode 0600) publishing NDJSON events of every "
            "request as it runs. Empty: $XDG_RUNTIME_DIR/ollama-wire/live.sock, else ~/.cache/ollama-wire/"
            "live.sock; `off`: no feed; anything else: that socket path.",
        )

    def configure(self, updated: set[str]) -> None:
        if OPTION not in updated:
            return
        problem = path_problem(ctx.options.ollama_live)
        if problem:
            message = f"{OPTION}={ctx.options.ollama_live}: {problem}"
            if self._running:
                raise exceptions.OptionsError(message)
            # At startup (often while the script's deferred --set values are applied, where a raised error
            # would abort the script load silently) log it: mitmproxy's startup check then exits with status 1.
            self.problem = message
            logger.error("ollama_live: %s", message)
            return
        self.problem = None
        if self._running:  # changed at run time: move the feed
            self._stop()
            self._start()

    def running(self) -> None:
        # Synchronous on purpose: mitmproxy's script loader may call it without awaiting (see the wire notes).
        self._running = True
        if self.problem:  # only reached where no startup error check stopped us already
            ctx.master.shutdown()
            return
        self._start()

    def done(self) -> None:
        self._stop()

    # -- requests still waiting for their response (Ollama answers headers with the first token) ----------
    def request(self, flow: http.HTTPFlow) -> None:
        publisher = self.publisher
        if publisher is None or not publisher.subscribers or self.recorder is None:
            return  # nobody watches: the recorder's start (at the response headers) is enough
        try:
            if self.recorder.is_ollama(flow):
                publisher.interaction_pending(flow.id, lambda: request_builder(flow))
        except Exception:  # never raise into mitmproxy
            logger.warning("ollama_live: could not note request %s", flow.request.path, exc_info=True)

    def response(self, flow: http.HTTPFlow) -> None:
        if self.publisher is not None:
            self.publisher.forget(flow.id)  # a pending request the recorder never took over

    def error(self, flow: http.HTTPFlow) -> None:
        if self.publisher is not None:
            self.publisher.forget(flow.id)

    def _start(self) -> None:
        path = socket_path(ctx.options.ollama_live)
        if path is None:
            return
        publisher = LivePublisher(path)
        self.publisher = publisher
        self.hub.add(publisher)
        asyncio.get_running_loop().create_task(self._serve(publisher))

    async def _serve(self, publisher: LivePublisher) -> None:
        try:
            await publisher.start()
        except LiveError as exc:
            self.hub.remove(publisher)
            if self.publisher is publisher:
                self.publisher = None
            logger.warning("ollama_live: %s (no live feed; recording goes on)", exc)
            return
        logger.info("ollama_live: live feed at %s", publisher.path)

    def _stop(self) -> None:
        if self.publisher is not None:
            self.hub.remove(self.publisher)
            self.publisher.close()
            self.publisher = None
