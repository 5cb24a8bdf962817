"""The live-feed addon: publishes what the recorder sees, as it happens, on a local Unix socket.

On by default (``ollama_live`` empty = ``$XDG_RUNTIME_DIR/ollama-wire/live.sock`` or the user's cache
directory); ``ollama_live=off`` turns it off, any other value is the socket path. ``ollama-wire top`` finds the
default socket by itself. The feed watches the recorder through its observer hub and never touches a flow:
a feed that cannot start is one warning, and the traffic goes on recorded as before.
"""

from __future__ import annotations

import asyncio
import logging

from mitmproxy import ctx, exceptions

from analyzer.live.paths import path_problem, socket_path
from analyzer.live.publisher import LiveError, LivePublisher
from analyzer.protocol.observer import ObserverHub

logger = logging.getLogger(__name__)
OPTION = "ollama_live"


class LiveFeed:
    """Owns one :class:`LivePublisher` for the life of the proxy; re-binds when ``ollama_live`` changes."""

    OPTIONS = (OPTION,)

    def __init__(self, hub: ObserverHub) -> None:
        self.hub = hub
        self.publisher: LivePublisher | None = None
        self.problem: str | None = None
        self._running = False

    def load(self, loader) -> None:
        loader.add_option(
            OPTION,
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
