"""The companion process: runs every feed beside mitmdump, so the proxy only records.

Started by the recorder (``python -m analyzer.companion SETTINGS_JSON``) with its stdin and stdout as private
pipes (wire.py). It mirrors each interaction the proxy reports (mirror.py) to one :class:`ObserverHub` holding the
feeds, in one order: resource sampling (fills the resource columns in ``enrich_record``), the live publisher, the
OpenTelemetry/Prometheus export. It **writes the log**: each finished record is enriched, handed to the feeds and
to a :class:`RecordWriter`, and acknowledged to the proxy once it is in the log (or the fallback file); the proxy
writes, itself, every record the companion did not acknowledge (see recorder/companion_link.py). End of stdin
(the proxy stopping or gone) ends it after it wrote what it holds. It ignores SIGINT: a Ctrl-C meant for mitmdump
reaches it too, and the proxy's shutdown still has records for it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import IO, Any

from analyzer.companion import wire
from analyzer.companion.feeds import FeedSettings
from analyzer.companion.mirror import MirroredBuilder
from analyzer.companion.resource_feed import ResourceFeed
from analyzer.live.publisher import LiveError, LivePublisher
from analyzer.protocol.observer import ObserverHub
from analyzer.protocol.record import InteractionRecord, format_address
from analyzer.resources.registry import Target
from analyzer.store.log import InteractionLog
from analyzer.store.writer import DEFAULT_MAX_PENDING, RecordWriter

logger = logging.getLogger(__name__)
HEARTBEAT_S = 1.0
WATCH_CHECK_S = 0.1
EXPORT_CLOSE_S = 3.0
WRITER_CLOSE_S = 10.0
MAX_LINE = 256 * 1024 * 1024  # a record or a request body far beyond any the proxy sends


class Companion:
    """The feeds and the log writer behind one pipe from the proxy."""

    def __init__(self, settings: FeedSettings, out: IO[bytes]) -> None:
        self.settings = settings
        self._out = out
        self._out_lock = threading.Lock()
        self.hub = ObserverHub()
        self.mirrors: dict[str, MirroredBuilder] = {}
        self.pending: set[str] = set()
        self._seqs: dict[int, int] = {}  # id(record) -> the proxy's sequence number, until written
        self.writer = RecordWriter(
            InteractionLog(Path(settings.log_dir)), max_pending=2 * DEFAULT_MAX_PENDING, on_written=self._written
        )
        self.resources: ResourceFeed | None = None
        self.publisher: LivePublisher | None = None
        self.export: Any = None
        self._watching = False

    # -- feeds ----------------------------------------------------------------------------------------------
    def open_feeds(self) -> None:
        """The feeds, in their one order (resources first: it fills columns the others show)."""
        settings = self.settings
        if settings.wants_resources:
            self.resources = ResourceFeed()
            self.hub.add(self.resources)
            target = Target(settings.server_host, settings.server_port, settings.resources_interval_ms)
            self.resources.start(settings.resources, target)
        if settings.live:
            self.publisher = LivePublisher(Path(settings.live))
        if settings.otlp_endpoint or settings.prometheus:
            self._open_export()

    def _open_export(self) -> None:
        from analyzer.export.observer import ExportObserver  # the SDK loads only when export is on
        from analyzer.export.settings import ExportConfigError, parse_listen

        settings = self.settings
        try:
            export = ExportObserver(
                otlp_endpoint=settings.otlp_endpoint,
                prometheus_address=settings.prometheus,
                content=settings.export_content,
                label_limit=settings.label_limit,
            )
        except ExportConfigError as exc:
            logger.error(
                "ollama_export: ollama_prometheus=%s: %s (no export; recording goes on)", settings.prometheus, exc
            )
            return
        self.export = export
        self.hub.add(export)
        if export.telemetry.prometheus is not None:
            host, _ = parse_listen(settings.prometheus)
            address = format_address(host, export.telemetry.prometheus.port)
            logger.info("ollama_export: Prometheus metrics at http://%s/metrics", address)
        if settings.otlp_endpoint:
            logger.info("ollama_export: OTLP to %s", settings.otlp_endpoint)

    async def start_live(self) -> None:
        publisher = self.publisher
        if publisher is None:
            return
        try:
            await publisher.start()
        except LiveError as exc:
            self.publisher = None
            logger.warning("ollama_live: %s (no live feed; recording goes on)", exc)
            return
        self.hub.add(publisher)
        logger.info("ollama_live: live feed at %s", publisher.path)

    def close_feeds(self) -> None:
        if self.publisher is not None:
            self.publisher.close()
        if self.export is not None:
            self.export.close(EXPORT_CLOSE_S)
        if self.resources is not None:
            self.resources.close()

    # -- messages from the proxy ---------------------------------------------------------------------------
    def handle(self, message: dict[str, Any]) -> None:
        kind = message.get("t")
        if kind == wire.RECORD:
            self._record(int(message["seq"]), InteractionRecord.from_dict(message["r"]))
        elif kind == wire.PROGRESS:
            mirror = self.mirrors.get(message["id"])
            if mirror is not None:
                mirror.progressed(message)
                self.hub.progressed(mirror)
        elif kind == wire.START:
            self._start(message)
        elif kind == wire.FORGET:
            self.mirrors.pop(message["id"], None)
            self.pending.discard(message["id"])
            if self.publisher is not None:
                self.publisher.forget(message["id"])

    def _start(self, message: dict[str, Any]) -> None:
        record_id = message["id"]
        mirror = self.mirrors.get(record_id)
        if mirror is None:
            mirror = self.mirrors[record_id] = MirroredBuilder(message)
        elif mirror.add_body(message) and self.publisher is not None:
            self.publisher.request_known(record_id)
        if message.get("pending"):
            self.pending.add(record_id)
            if self.publisher is not None:
                self.publisher.interaction_pending(record_id, lambda: mirror)
            return
        self.pending.discard(record_id)
        if not mirror.announced:  # a later start only brings the body (someone began to watch)
            mirror.announced = True
            self.hub.started(mirror)

    def _record(self, seq: int, record: InteractionRecord) -> None:
        self.mirrors.pop(record.id, None)
        self.pending.discard(record.id)
        self.hub.enrich(record)
        self.hub.finished(record)
        self._seqs[id(record)] = seq
        self.writer.submit(record)

    # -- messages to the proxy -----------------------------------------------------------------------------
    def _written(self, records: list[InteractionRecord]) -> None:
        seqs = [seq for record in records if (seq := self._seqs.pop(id(record), None)) is not None]
        if seqs:
            self.say({"ack": seqs})

    def say(self, message: dict[str, Any]) -> None:
        data = json.dumps(message, separators=(",", ":")).encode() + b"\n"
        with self._out_lock:
            try:
                self._out.write(data)
                self._out.flush()
            except (BrokenPipeError, ValueError, OSError):
                pass  # the proxy is gone; stdin's end follows

    async def keep_in_touch(self) -> None:
        """Heartbeats, and whether anyone watches the live feed (the proxy then sends prompts and tails)."""
        last_beat = 0.0
        while True:
            publisher = self.publisher
            watching = bool(publisher is not None and any(not s.closing for s in publisher.subscribers))
            if watching != self._watching:
                self._watching = watching
                self.say({"watching": watching})
            now = time.monotonic()
            if now - last_beat >= HEARTBEAT_S:
                last_beat = now
                self.say({"alive": 1})
            await asyncio.sleep(WATCH_CHECK_S)

    # -- the loop -------------------------------------------------------------------------------------------
    async def run(self, stdin: IO[bytes]) -> None:
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader(limit=MAX_LINE)
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), stdin)
        self.open_feeds()
        await self.start_live()
        self.say({"ready": os.getpid()})
        touch = loop.create_task(self.keep_in_touch())
        try:
            while line := await reader.readline():
                try:
                    message = json.loads(line)
                    self.handle(message)
                except Exception:  # one bad message must not end the feeds (nor lose the records after it)
                    logger.warning("ollama-wire companion: could not handle a message", exc_info=True)
        finally:
            touch.cancel()
            self.close_feeds()
            self.writer.close(WRITER_CLOSE_S)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m analyzer.companion SETTINGS_JSON (started by the recorder)", file=sys.stderr)
        return 2
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("[companion] %(message)s"))
    package = logging.getLogger("analyzer")
    package.addHandler(handler)
    package.setLevel(logging.INFO)
    companion = Companion(FeedSettings.from_json(args[0]), sys.stdout.buffer)
    asyncio.run(companion.run(sys.stdin.buffer))
    return 0
