"""The publishing side of the live feed: an interaction observer plus a Unix-socket server on the proxy's loop.

Nothing here runs per fragment beyond setting a flag: the observer calls (on the traffic path) only note
that a flow started, moved or finished. A ticker on the event loop turns that into events every
``interval_s`` (so at most 1/interval progress events per flow), encodes each once and writes it to every
subscriber without waiting: a subscriber whose unsent buffer is above ``buffer_limit`` bytes misses the event
(counted, per subscriber and in total), and once it has drained it gets a ``dropped`` notice followed by the
in-flight state again. With no subscriber attached nothing is encoded at all.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from analyzer.live import events
from analyzer.protocol.interaction import InteractionBuilder
from analyzer.protocol.record import InteractionRecord

logger = logging.getLogger(__name__)

DEFAULT_INTERVAL_S = 0.1
DEFAULT_BUFFER_LIMIT = 256 * 1024
MAX_SUBSCRIBERS = 32
PENDING_MAX_S = 3600.0  # a request with no response for an hour that the recorder never took over is dropped
TAIL_INTERVAL_S = 1.0  # the response tail rides on at most one progress event per second per request


class LiveError(Exception):
    """The feed could not be served (socket in use, directory not writable, ...); the message says why."""


@dataclass
class _Flow:
    builder: InteractionBuilder | None  # None while only the request is known (see ``interaction_pending``)
    factory: Callable[[], InteractionBuilder] | None = None
    pending_since: float = 0.0
    start_line: bytes | None = None  # encoded once, on the first tick that has a subscriber
    progress_line: bytes | None = None  # the latest progress, for subscribers attaching mid-stream
    dirty: bool = True
    tail_at: float = 0.0  # when a progress last carried the response tail
    tail_owed: bool = False  # a progress went out without the tail: send it once its second is up


@dataclass
class _Subscriber:
    writer: asyncio.StreamWriter
    limit: int
    dropped: int = 0
    lagging: bool = False
    sent: int = 0
    lost_since_notice: int = 0

    @property
    def closing(self) -> bool:
        return self.writer.transport.is_closing()

    def backlog(self) -> int:
        return self.writer.transport.get_write_buffer_size()


class LivePublisher:
    """Serves live events on ``path`` (a Unix socket, 0600) to any number of subscribers."""

    def __init__(
        self,
        path: Path,
        *,
        interval_s: float = DEFAULT_INTERVAL_S,
        buffer_limit: int = DEFAULT_BUFFER_LIMIT,
    ) -> None:
        self.path = path
        self.interval_s = interval_s
        self.buffer_limit = buffer_limit
        self.flows: dict[str, _Flow] = {}
        self.subscribers: list[_Subscriber] = []
        self.dropped = 0  # events not sent to some subscriber, all subscribers together
        self.published = 0  # events written, all subscribers together
        self._finished: list[InteractionRecord] = []
        self._server: asyncio.base_events.Server | None = None
        self._ticker: asyncio.Task | None = None

    # -- observer (traffic path: O(1), never blocks) ------------------------------------------
    def interaction_pending(self, record_id: str, factory: Callable[[], InteractionBuilder]) -> None:
        """A request arrived and its response has not started (Ollama sends headers with the first token, so a
        model load can take a while): shown as waiting. ``factory`` builds a request-only builder; it is
        called on a tick, off the traffic path, and only while someone is watching."""
        if record_id not in self.flows:
            self.flows[record_id] = _Flow(None, factory, time.time())

    def interaction_started(self, builder: InteractionBuilder) -> None:
        flow = self.flows.get(builder.record_id)
        if flow is None:
            self.flows[builder.record_id] = _Flow(builder)
        else:  # it was pending: the recorder's builder takes over (same id, same request)
            flow.builder, flow.factory, flow.dirty = builder, None, True

    def interaction_progressed(self, builder: InteractionBuilder) -> None:
        flow = self.flows.get(builder.record_id)
        if flow is not None:
            flow.dirty = True

    def request_known(self, record_id: str) -> None:
        """The request of a running flow became known in full (its body came later): its ``start`` goes out again."""
        flow = self.flows.get(record_id)
        if flow is not None and flow.start_line is not None:
            flow.start_line = None
            flow.dirty = True

    def forget(self, record_id: str) -> None:
        """The exchange is over whether or not the recorder reported it (a pending request it never took over)."""
        self.flows.pop(record_id, None)

    def enrich_record(self, record: InteractionRecord) -> None:
        pass  # owns no column

    def interaction_finished(self, record: InteractionRecord) -> None:
        self.flows.pop(record.id, None)
        if self.subscribers:
            self._finished.append(record)

    # -- serving ------------------------------------------------------------------------------
    async def start(self) -> None:
        """Bind the socket (directory 0700 when we create it, socket 0600) and start the ticker."""
        path = self.path
        try:
            if not path.parent.exists():
                path.parent.mkdir(mode=0o700, parents=True)
            if path.exists() or path.is_symlink():
                if _someone_listens(path):
                    raise LiveError(f"{path}: another recorder already publishes its live feed here")
                path.unlink()  # stale socket of a recorder that did not exit cleanly
            self._server = await asyncio.start_unix_server(self._attach, path=str(path))
            os.chmod(path, 0o600)
        except OSError as exc:
            raise LiveError(f"{path}: cannot serve the live feed ({exc.strerror or exc})") from exc
        self._ticker = asyncio.get_running_loop().create_task(self._tick_forever())

    def close(self) -> None:
        """Stop serving (synchronous: usable from mitmproxy's ``done`` hook); subscribers see EOF.

        A last tick first hands out what the recorder just finished (at shutdown: the flows it flagged)."""
        if self._server is not None:
            try:
                self.tick()
            except Exception:
                logger.warning("ollama_live: last tick failed", exc_info=True)
        if self._ticker is not None:
            self._ticker.cancel()
            self._ticker = None
        if self._server is not None:
            self._server.close()
            self._server = None
            with contextlib.suppress(OSError):
                self.path.unlink()
        for subscriber in self.subscribers:
            subscriber.writer.close()
        self.subscribers.clear()

    async def _tick_forever(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            try:
                self.tick()
            except Exception:  # a bug here must not end the feed for good, nor reach the traffic
                logger.warning("ollama_live: tick failed", exc_info=True)

    def tick(self, now: float | None = None) -> None:
        """Turn what happened since the last tick into events for every subscriber."""
        self.subscribers = [s for s in self.subscribers if not s.closing]
        if not self.subscribers:
            self._finished.clear()
            return
        now = now or time.time()
        for key, flow in list(self.flows.items()):
            if flow.builder is None and not self._build_pending(key, flow, now):
                continue
            builder = flow.builder
            assert builder is not None
            if flow.start_line is None:
                self._broadcast(self._start_line(flow, now))
            tail_due = now - flow.tail_at >= TAIL_INTERVAL_S
            if flow.dirty or (flow.tail_owed and tail_due):
                flow.dirty = False
                with_tail = tail_due
                flow.tail_owed = not with_tail
                if with_tail:
                    flow.tail_at = now
                flow.progress_line = events.encode(events.progress_event(builder, now, with_tail=with_tail))
                self._broadcast(flow.progress_line)
        finished, self._finished = self._finished, []
        for record in finished:
            self._broadcast(events.encode(events.end_event(record, now)))

    def _build_pending(self, key: str, flow: _Flow, now: float) -> bool:
        """Make the request-only builder of a pending flow; False (and forget it) when that fails or it is stale."""
        if flow.factory is None or now - flow.pending_since > PENDING_MAX_S:
            del self.flows[key]  # the recorder never took it over (a hook mitmproxy did not call): forget it
            return False
        try:
            flow.builder = flow.factory()
        except Exception:
            del self.flows[key]
            logger.warning("ollama_live: could not read pending request %s", key, exc_info=True)
            return False
        flow.factory = None
        return True

    def _start_line(self, flow: _Flow, now: float) -> bytes:
        assert flow.builder is not None
        if flow.start_line is None:
            flow.start_line = events.encode(events.start_event(flow.builder, now))
        return flow.start_line

    def _in_flight_lines(self, now: float) -> list[bytes]:
        lines: list[bytes] = []
        for key, flow in list(self.flows.items()):
            if flow.builder is None and not self._build_pending(key, flow, now):
                continue
            lines.append(self._start_line(flow, now))
            if flow.progress_line is not None:
                lines.append(flow.progress_line)
        return lines

    def _broadcast(self, line: bytes) -> None:
        for subscriber in self.subscribers:
            self._send(subscriber, line)

    def _send(self, subscriber: _Subscriber, line: bytes) -> None:
        """Write without waiting; over the limit the event is dropped and counted instead."""
        if subscriber.closing:
            return
        if subscriber.backlog() > subscriber.limit:
            if not subscriber.lagging:  # once per episode: mitmdump's console says so as well as top
                logger.info("ollama_live: a subscriber reads too slowly; its events are dropped until it catches up")
            subscriber.dropped += 1
            subscriber.lost_since_notice += 1
            subscriber.lagging = True
            self.dropped += 1
            return
        if subscriber.lagging:  # drained again: say what was lost, then the current in-flight state
            subscriber.lagging = False
            notice = events.encode(events.dropped_event(subscriber.lost_since_notice, list(self.flows)))
            subscriber.lost_since_notice = 0
            subscriber.writer.write(b"".join([notice, *self._in_flight_lines(time.time())]))
        subscriber.writer.write(line)
        subscriber.sent += 1
        self.published += 1

    async def _attach(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """A new subscriber: ``hello``, then every in-flight request (start + latest progress), then live events."""
        if len(self.subscribers) >= MAX_SUBSCRIBERS:
            writer.close()
            return
        now = time.time()
        subscriber = _Subscriber(writer, self.buffer_limit)
        lines = [events.encode(events.hello_event(len(self.flows), os.getpid(), now)), *self._in_flight_lines(now)]
        writer.write(b"".join(lines))
        self.subscribers.append(subscriber)
        try:
            while await reader.read(4096):  # subscribers say nothing; EOF means gone
                pass
        except (ConnectionError, OSError):
            pass
        except asyncio.CancelledError:  # the loop is shutting down; end quietly (asyncio would log it otherwise)
            pass
        finally:
            if subscriber in self.subscribers:
                self.subscribers.remove(subscriber)
            writer.close()


def _someone_listens(path: Path) -> bool:
    """Whether a live process accepts connections on the Unix socket ``path`` (a stale file refuses)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(0.5)
        try:
            probe.connect(str(path))
        except OSError:
            return False
        return True
