"""The log's writer thread: records go to the interaction log from a thread of their own, and none is lost
silently when the log cannot be written (used by whichever process writes the log: the feeds' companion, or
the proxy itself when the companion is off or down; see docs/architecture.md).

:meth:`RecordWriter.submit` never blocks (it only appends to an in-memory queue, bounded by
``max_pending``), so a slow or failing disk never reaches the traffic path. The writer thread appends
what is queued; when that fails (disk full, directory gone, permissions) it keeps the records, retries
with a growing pause, warns once per outage (naming the fallback file) and, when the log is writable
again, writes them and says how many were held. On :meth:`close` (mitmdump's shutdown) whatever still
cannot be written goes to a private fallback file; a record is only ever dropped when the queue is full,
and then it is counted and reported.
"""

from __future__ import annotations

import logging
import os
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from analyzer.protocol.record import InteractionRecord
from analyzer.store.log import InteractionLog, LogError, record_file

logger = logging.getLogger(__name__)

DEFAULT_MAX_PENDING = 10_000
BATCH = 64  # records per append: the JSON of one batch holds the GIL only briefly
COALESCE_S = 0.02
RETRY_FIRST_S = 0.2
RETRY_MAX_S = 5.0


def fallback_path(now: datetime | None = None) -> Path:
    """Where unwritten records go at shutdown: ``~/.local/state/ollama-wire/unsaved-<UTC time>-<pid>.jsonl``."""
    state = Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state")
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%SZ")
    return state / "ollama-wire" / f"unsaved-{stamp}-{os.getpid()}.jsonl"


class RecordWriter:
    """Writes records to an :class:`InteractionLog` off the caller's thread; see the module docstring."""

    def __init__(
        self,
        log: InteractionLog,
        *,
        max_pending: int = DEFAULT_MAX_PENDING,
        fallback: Path | None = None,
        warn: Callable[[str], None] | None = None,
        on_written: Callable[[list[InteractionRecord]], None] | None = None,
    ) -> None:
        self.log = log
        self.max_pending = max_pending
        self.fallback = fallback or fallback_path()
        self.warn = warn or (lambda message: logger.warning("ollama_log: %s", message))
        # told (in the writer thread, or in close()) of every batch that reached the log or the fallback file
        self.on_written = on_written
        self.written = 0
        self.dropped = 0
        self.outages = 0
        self._queue: deque[InteractionRecord] = deque()
        self._cond = threading.Condition()
        self._closing = False
        self._outage_held = 0  # records that waited during the current outage (0: no outage)
        self._outage_dropped = 0
        self._thread: threading.Thread | None = None  # started by the first record

    # -- caller side (the mitmproxy event loop) -------------------------------------------------------------
    def submit(self, record: InteractionRecord) -> None:
        """Queue one record for writing; never blocks. A full queue drops the record, counted."""
        with self._cond:
            if len(self._queue) >= self.max_pending:
                self.dropped += 1
                self._outage_dropped += 1
                if self._outage_dropped == 1:
                    self.warn(
                        f"{self.max_pending} records wait to be written: dropping new ones until the log is "
                        "writable again (counted)"
                    )
                return
            self._queue.append(record)
            if len(self._queue) == 1:  # the writer is idle: wake it (later records join its batch)
                self._cond.notify()
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="ollama-log-writer", daemon=True)
                self._thread.start()

    @property
    def pending(self) -> int:
        """Records queued and not yet written."""
        with self._cond:
            return len(self._queue)

    def set_log(self, log: InteractionLog) -> None:
        """Write to another log from now on (the ``ollama_log_dir`` option changed)."""
        with self._cond:
            self.log = log
            self._cond.notify()

    def close(self, timeout_s: float = 10.0) -> Path | None:
        """Write what is queued (bounded by ``timeout_s``); what cannot be written goes to the fallback
        file, which is returned (None when nothing was left)."""
        with self._cond:
            self._closing = True
            self._cond.notify()
            thread = self._thread
        if thread is not None:
            thread.join(timeout_s)
        with self._cond:
            left = list(self._queue)
            self._queue.clear()
        if not left:
            if self.dropped:
                self.warn(f"{self.dropped} record(s) were dropped while the log could not be written")
            return None
        return self._save_fallback(left)

    # -- the writer thread ------------------------------------------------------------------------------------
    def _run(self) -> None:
        pause = RETRY_FIRST_S
        while True:
            with self._cond:
                while not self._queue and not self._closing:
                    self._cond.wait()
                if not self._queue:
                    return
                if len(self._queue) < BATCH and not self._closing and not self._outage_held:
                    # Let a burst of finishing flows share one append (one open, lock and write, not one each).
                    self._cond.wait(COALESCE_S)
                log = self.log
                batch = self._same_file_batch(log)
                closing = self._closing
            try:
                log.append_many(batch)
            except LogError as exc:
                self._start_outage(exc, len(batch))
                if closing:
                    return  # close() saves the rest to the fallback file
                with self._cond:
                    self._cond.wait(pause)
                pause = min(pause * 2, RETRY_MAX_S)
                continue
            pause = RETRY_FIRST_S
            with self._cond:
                for _ in batch:
                    self._queue.popleft()
                self.written += len(batch)
                ended = self._outage_held
                if ended and not self._queue:
                    self._outage_held = 0
            if self.on_written is not None:
                self.on_written(batch)
            if ended and not self._queue:
                self._end_outage(ended)

    def _same_file_batch(self, log: InteractionLog) -> list[InteractionRecord]:
        """The oldest queued records that go to the same daily file (so a batch fails or succeeds whole)."""
        first = self._queue[0]
        path = record_file(log.log_dir, first)
        batch = [first]
        for record in list(self._queue)[1:BATCH]:
            if record_file(log.log_dir, record) != path:
                break
            batch.append(record)
        return batch

    def _start_outage(self, exc: LogError, size: int) -> None:
        with self._cond:
            first = self._outage_held == 0
            self._outage_held = max(self._outage_held, len(self._queue), size)
            held = self._outage_held
        if first:
            self.outages += 1
            self.warn(
                f"{exc}; keeping {held} unwritten record(s) in memory (at most {self.max_pending}) and retrying; "
                f"records still unwritten at shutdown go to {self.fallback}"
            )

    def _end_outage(self, held: int) -> None:
        dropped, self._outage_dropped = self._outage_dropped, 0
        extra = f", {dropped} dropped (queue full)" if dropped else ""
        self.warn(f"the interaction log is writable again: wrote the records held during the outage ({held}{extra})")

    # -- shutdown ------------------------------------------------------------------------------------------------
    def _save_fallback(self, records: list[InteractionRecord]) -> Path | None:
        data = "".join(r.to_json() + "\n" for r in records).encode("utf-8", "replace")
        for path in (self.fallback, Path(tempfile.gettempdir()) / f"ollama-wire-{os.getuid()}" / self.fallback.name):
            try:
                path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
                fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
                try:
                    view = memoryview(data)
                    while view:
                        view = view[os.write(fd, view) :]
                finally:
                    os.close(fd)
            except OSError as exc:
                self.warn(f"{path}: cannot save unwritten records: {exc.strerror or exc}")
                continue
            self.warn(
                f"{len(records)} record(s) could not be written to {self.log.log_dir}: saved to {path} "
                "(append them to the log when it is writable)"
            )
            if self.on_written is not None:
                self.on_written(records)
            return path
        logger.error(
            "ollama_log: %d record(s) lost: neither the log nor a fallback file could be written", len(records)
        )
        return None


def wait_until_written(writer: RecordWriter, timeout_s: float) -> bool:
    """Poll (bounded) until the queue is empty; True if it emptied."""
    deadline = time.monotonic() + timeout_s
    while writer.pending and time.monotonic() < deadline:
        time.sleep(0.01)
    return not writer.pending


__all__ = ["RecordWriter", "fallback_path", "wait_until_written"]
