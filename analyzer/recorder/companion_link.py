"""The proxy's end of the feeds' companion process: start it, hand it events and records, never wait for it.

mitmdump only records. Every feed — resource sampling, the live feed's fan-out, OTLP and Prometheus — runs in
one companion process (``analyzer.companion``) that this link starts when the proxy starts, restarts when it
dies and stops with the proxy. What crosses (analyzer/companion/wire.py) goes over the child's own stdin/stdout
pipes, so nothing is reachable from outside.

On the traffic path the link only appends to bounded in-memory queues: ``started`` (a start message),
``finished`` (the record itself, encoded later by the sender thread) and the ticker's coalesced progress. A
sender thread writes to the pipe; a reader thread takes the companion's acks. **Who writes the log**: the
companion, when it runs (so a record is written once, with its resource columns). A record it did not
acknowledge — the companion is down, stuck, too far behind (``MAX_UNACKED``) or died holding it — is written
by the proxy's own writer, flagged ``resources_unavailable`` when resource sampling was asked for. A companion
that dies is restarted (with a growing pause); one that stops answering for ``STALL_S`` is killed and restarted.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import analyzer
from analyzer.companion import wire
from analyzer.companion.feeds import FeedSettings
from analyzer.live.events import MAX_PARSED_REQUEST, TAIL_CHARS
from analyzer.live.publisher import DEFAULT_INTERVAL_S, TAIL_INTERVAL_S
from analyzer.protocol.interaction import InteractionBuilder
from analyzer.protocol.record import FLAG_RESOURCES_UNAVAILABLE, InteractionRecord

logger = logging.getLogger(__name__)

MAX_UNACKED = 4096  # records handed over and not yet in the log; beyond, the proxy writes them itself
MAX_EVENTS = 8192  # start/progress messages waiting for the pipe; beyond, dropped (counted)
STALL_S = 10.0  # no word from the companion for this long: killed and restarted
CLOSE_S = 15.0  # at shutdown, how long the companion may take to write what it holds
RESTART_FIRST_S = 0.5
RESTART_MAX_S = 30.0
UNWATCHED_PROGRESS_S = 1.0  # progress for resource sampling only: once a second per interaction is enough
EDGE_BYTES = 64 * 1024
COALESCE_S = 0.02  # the sender writes what was queued this often: a burst shares one write, no per-message wake-up
COMPANION_READY = "running in their companion process"  # the console line tests and benchmarks wait for
NO_COMPANION = "every feed is off: no companion process, the proxy writes the log"


def companion_command(settings: FeedSettings) -> list[str]:
    return [sys.executable, "-m", "analyzer.companion", settings.to_json()]


def feed_body(builder: InteractionBuilder) -> bytes:
    """The request body as the live feed needs it: whole up to the size it parses, else its two edges."""
    size = builder.in_flight().request_bytes
    if size <= MAX_PARSED_REQUEST:
        return builder.request_edges(MAX_PARSED_REQUEST)[0]
    head, tail = builder.request_edges(EDGE_BYTES)
    return head + tail


@dataclass
class _Watched:
    """An interaction in flight, as the ticker last reported it."""

    builder: InteractionBuilder
    body_sent: bool
    chunks: int = -1
    status: int | None = None
    sent_at: float = 0.0
    tail_at: float = 0.0


@dataclass
class _Session:
    """One run of the companion process."""

    process: subprocess.Popen[bytes]
    started: float = field(default_factory=time.monotonic)
    heard_at: float = field(default_factory=time.monotonic)
    out: deque[bytes | tuple[int, InteractionRecord]] = field(default_factory=deque)
    unacked: dict[int, InteractionRecord] = field(default_factory=dict)
    ended: bool = False


class CompanionLink:
    """Supervises the companion; see the module docstring."""

    def __init__(
        self,
        settings: FeedSettings,
        write_locally: Callable[[InteractionRecord], None],
        *,
        command: Callable[[FeedSettings], list[str]] = companion_command,
    ) -> None:
        self.settings = settings
        self.write_locally = write_locally  # the proxy's own writer
        self.command = command
        self.flag = FLAG_RESOURCES_UNAVAILABLE if settings.wants_resources else None
        self.watching = False  # someone reads the live feed: starts carry bodies, progress carries tails
        self.handed = 0  # records acknowledged by the companion
        self.written_by_proxy = 0
        self.dropped_events = 0
        self.restarts = 0
        self.flows: dict[str, _Watched] = {}
        self.pending: set[str] = set()
        self._seq = 0
        self._lock = threading.Lock()  # between the link's threads only: the event loop never takes it
        self._session: _Session | None = None
        self._closing = False
        self._wake = threading.Event()
        self._supervisor: threading.Thread | None = None
        self._pause = RESTART_FIRST_S
        self._next_start = 0.0
        self._swept_at = 0.0  # the ticker's last sweep over the interactions in flight

    # -- life ------------------------------------------------------------------------------------------------
    def start(self) -> None:
        """Start the companion (a fork and exec at the proxy's start; it loads on its own time) and its supervisor."""
        if not self._spawn():
            self._back_off(time.monotonic(), 0.0)
        self._supervisor = threading.Thread(target=self._supervise, name="ollama-companion", daemon=True)
        self._supervisor.start()

    def close(self, timeout_s: float = CLOSE_S) -> None:
        """Let the companion write what it holds (bounded), then stop it; what it did not write, the proxy does."""
        with self._lock:
            self._closing = True
            session = self._session
        self._wake.set()
        if self._supervisor is not None:
            self._supervisor.join(5.0)
        if session is not None:
            try:
                session.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                logger.warning("ollama_log: the feeds' companion did not stop in %.0f s: killed", timeout_s)
                session.process.kill()
            deadline = time.monotonic() + 5.0
            while not session.ended and time.monotonic() < deadline:
                time.sleep(0.01)
            self._ended(session)  # idempotent: the reader thread may have done it
        if self.dropped_events:
            logger.info("ollama_log: %d live event(s) were dropped on the way to the companion", self.dropped_events)

    @property
    def up(self) -> bool:
        return self._session is not None

    # -- the traffic path (mitmproxy's event loop): O(1), never blocks -----------------------------------------
    def started(self, builder: InteractionBuilder, size: int) -> None:
        """``builder`` began (``size``: its request body's length)."""
        watched = _Watched(builder, body_sent=self.watching)
        self.flows[builder.record_id] = watched
        self.pending.discard(builder.record_id)
        body = feed_body(builder) if watched.body_sent else None
        self._event(wire.start_message(builder, body, size=size))

    def request_pending(self, builder: InteractionBuilder) -> None:
        """A request whose response has not started, shown as waiting while someone watches."""
        self.pending.add(builder.record_id)
        self._event(wire.start_message(builder, feed_body(builder), pending=True))

    def forget(self, record_id: str) -> None:
        if record_id in self.pending:
            self.pending.discard(record_id)
            self._event(wire.forget_message(record_id))

    def finished(self, record: InteractionRecord) -> bool:
        """Hand ``record`` to the companion; False when it cannot take it (the caller writes it, flagged).

        No lock (the event loop must not wait on the link's threads): single dict and deque operations are atomic,
        and a session that ended meanwhile either took the record into its leftovers or gives it back here."""
        self.flows.pop(record.id, None)
        self.pending.discard(record.id)
        session = self._session
        if session is None or session.ended or len(session.unacked) >= MAX_UNACKED:
            return False
        self._seq += 1
        seq = self._seq
        session.unacked[seq] = record
        session.out.append((seq, record))
        # It ended as we handed over and did not take the record into its leftovers: the caller writes it.
        return not (session.ended and session.unacked.pop(seq, None) is not None)

    def flag_and_write(self, record: InteractionRecord) -> None:
        """Write ``record`` with the proxy's own writer: without resource columns, which the record says."""
        if self.flag is not None and self.flag not in record.flags:
            record.flags.append(self.flag)
        self.written_by_proxy += 1
        self.write_locally(record)

    def tick(self, now: float | None = None) -> None:
        """Coalesced progress of the interactions in flight (run on the event loop every ``DEFAULT_INTERVAL_S``)."""
        if self._session is None:
            return
        now = now or time.time()
        watching = self.watching
        if not watching and not self.settings.wants_resources:
            return  # nobody needs progress: export reads only records
        every = DEFAULT_INTERVAL_S if watching else UNWATCHED_PROGRESS_S
        if now - self._swept_at < every * 0.8:  # the ticker runs every ~DEFAULT_INTERVAL_S
            return
        self._swept_at = now
        for watched in list(self.flows.values()):
            builder = watched.builder
            if watching and not watched.body_sent:
                watched.body_sent = True
                self._event(wire.start_message(builder, feed_body(builder)))
            chunks = builder.chunks
            if chunks == watched.chunks and builder.status == watched.status:
                continue
            watched.chunks, watched.status, watched.sent_at = chunks, builder.status, now
            tail = None
            if watching and now - watched.tail_at >= TAIL_INTERVAL_S:
                watched.tail_at = now
                tail = builder.response_tail(TAIL_CHARS)
            self._event(wire.progress_message(builder.record_id, builder.in_flight(), tail))

    def _event(self, data: bytes) -> None:
        session = self._session
        if session is None or session.ended:
            return
        if len(session.out) >= MAX_EVENTS:
            self.dropped_events += 1
            return
        session.out.append(data)

    # -- threads -----------------------------------------------------------------------------------------------
    def _supervise(self) -> None:
        while not self._closing:
            session = self._session
            now = time.monotonic()
            if session is None:
                if now >= self._next_start:
                    if self._spawn():
                        self.restarts += 1
                    else:
                        self._back_off(now, 0.0)
            elif now - session.heard_at > STALL_S and session.process.poll() is None:
                logger.warning("ollama_log: the feeds' companion has not answered for %.0f s: restarting it", STALL_S)
                session.process.kill()  # the reader sees its end and hands its records back
            self._wake.wait(0.2)
            self._wake.clear()

    def _back_off(self, now: float, lived_s: float) -> None:
        if lived_s > 60:
            self._pause = RESTART_FIRST_S
        self._next_start = now + self._pause
        self._pause = min(self._pause * 2, RESTART_MAX_S)

    def _spawn(self) -> bool:
        env = dict(os.environ)
        root = str(Path(analyzer.__file__).resolve().parent.parent)  # so the child imports this same package
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH", "")]))
        try:
            process = subprocess.Popen(
                self.command(self.settings),
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=None,  # its log lines go to mitmdump's console
                env=env,
                start_new_session=True,  # a Ctrl-C at the terminal is mitmdump's to pass on, not the companion's
            )
        except OSError as exc:
            logger.warning("ollama_log: cannot start the feeds' companion (%s); the proxy writes the log", exc)
            return False
        session = _Session(process)
        with self._lock:
            if self._closing:
                process.kill()
                return False
            self._session = session
            self.watching = False
        threading.Thread(target=self._send, args=(session,), name="ollama-companion-send", daemon=True).start()
        threading.Thread(target=self._read, args=(session,), name="ollama-companion-read", daemon=True).start()
        return True

    def _send(self, session: _Session) -> None:
        """Every ``COALESCE_S``, write what the event loop queued (one write for a burst; no wake-up per message)."""
        stdin = session.process.stdin
        assert stdin is not None
        fd = stdin.fileno()
        out = session.out
        while True:
            last_round = self._closing or session.ended
            items = []
            while out:
                items.append(out.popleft())
            if items:
                data = b"".join(item if isinstance(item, bytes) else wire.record_line(*item) for item in items)
                try:
                    view = memoryview(data)
                    while view:
                        view = view[os.write(fd, view) :]
                except OSError:
                    break  # the companion is gone: the reader sees its end and hands the records back
            elif last_round:
                break
            if not last_round:
                time.sleep(COALESCE_S)
        with contextlib.suppress(OSError):
            stdin.close()

    def _read(self, session: _Session) -> None:
        stdout = session.process.stdout
        assert stdout is not None
        for raw in stdout:
            session.heard_at = time.monotonic()
            try:
                message = json.loads(raw)
            except ValueError:
                continue
            acked = message.get("ack")
            if acked:
                for seq in acked:
                    if session.unacked.pop(seq, None) is not None:
                        self.handed += 1
            elif "watching" in message:
                self.watching = bool(message["watching"])
            elif "ready" in message:
                logger.info("ollama_feeds: %s (pid %s)", COMPANION_READY, message["ready"])
        session.process.wait()
        self._ended(session)

    def _ended(self, session: _Session) -> None:
        """The companion is gone: the records it did not acknowledge are written by the proxy (once)."""
        with self._lock:
            if session.ended:
                return
            session.ended = True  # first: finished() checks it after handing over (see there)
            taken: list[tuple[int, InteractionRecord]] = []
            while True:  # one atomic pop at a time: a record handed over meanwhile is either taken or given back
                try:
                    taken.append(session.unacked.popitem())
                except KeyError:
                    break
            left = [record for _, record in sorted(taken, key=lambda item: item[0])]
            if self._session is session:
                self._session = None
            self.watching = False
            closing = self._closing
            now = time.monotonic()
            self._back_off(now, now - session.started)
        self._wake.set()
        code = session.process.returncode
        if not closing or code:
            logger.warning(
                "ollama_log: the feeds' companion ended (status %s)%s%s",
                code,
                f"; the proxy wrote {len(left)} record(s) it held" if left else "",
                "; restarting it" if not closing else "",
            )
        for record in left:
            self.flag_and_write(record)
