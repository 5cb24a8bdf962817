"""A sampler fed by a child process that prints one reading after another (``macmon pipe``, ``powermetrics``).

A reader thread parses the child's output and keeps only the newest reading; ``read()`` returns it when it is
fresh. Memory is bounded by the parser's record size, whatever the child prints.
"""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from typing import IO

from analyzer.resources.base import Unavailable

MAX_RECORD_BYTES = 4 * 1024 * 1024  # one JSON line / one plist; anything longer is skipped
STDERR_TAIL_BYTES = 4000  # what is kept of the child's stderr (for the reason it failed); the rest is drained


def split_records(stream: IO[bytes], separator: bytes) -> Iterator[bytes]:
    """The records of ``stream`` between ``separator`` bytes; an over-long record is dropped, not buffered."""
    pending = bytearray()
    skipping = False
    while True:
        data = stream.read1(65536) if hasattr(stream, "read1") else stream.read(65536)
        if not data:
            break
        pending += data
        while True:
            cut = pending.find(separator)
            if cut < 0:
                break
            record, pending = bytes(pending[:cut]), pending[cut + 1 :]
            if not skipping and record.strip():
                yield record
            skipping = False
        if len(pending) > MAX_RECORD_BYTES:
            pending.clear()
            skipping = True
    if pending.strip() and not skipping:
        yield bytes(pending)


class StreamedSampler:
    """Runs ``command``; ``parse(record)`` turns each record into metrics (or None to skip it)."""

    name = "streamed"

    def __init__(
        self,
        command: list[str],
        parse: Callable[[bytes], dict[str, float] | None],
        separator: bytes = b"\n",
        stale_after: float = 5.0,
    ) -> None:
        self.command = command
        self._parse = parse
        self._separator = separator
        self._stale_after = stale_after
        self._latest: dict[str, float] = {}
        self._latest_at = 0.0
        self._process: subprocess.Popen[bytes] | None = None
        self._thread: threading.Thread | None = None
        self._drain: threading.Thread | None = None
        self._stderr_tail = bytearray()
        self.records = 0
        self.skipped = 0
        self.error = ""

    def start(self, first_reading_timeout: float) -> None:
        """Start the child; raise Unavailable if it exits or prints nothing usable within the timeout."""
        try:
            self._process = subprocess.Popen(
                self.command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE
            )
        except OSError as exc:
            raise Unavailable(f"cannot run {self.command[0]}: {exc.strerror or exc}") from None
        self._thread = threading.Thread(target=self._reader, name=f"{self.name}-reader", daemon=True)
        self._thread.start()
        # A child that writes warnings to stderr would block once the pipe is full, and stop its readings: drain it.
        threading.Thread(
            target=self._drain_stderr, args=(self._process,), name=f"{self.name}-stderr", daemon=True
        ).start()
        if first_reading_timeout <= 0:
            return
        deadline = time.monotonic() + first_reading_timeout
        while time.monotonic() < deadline and not self._latest_at:
            if self._process.poll() is not None and not self._thread.is_alive():
                break
            time.sleep(0.02)
        if not self._latest_at:
            if self._process.poll() is not None and self._drain is not None:
                self._drain.join(timeout=1.0)  # the child's last words, before its pipe is closed
            self.close()
            stderr = bytes(self._stderr_tail)
            reason = stderr.decode("utf-8", "replace").strip().splitlines()[-1:] or [
                f"no reading within {first_reading_timeout:g} s"
            ]
            raise Unavailable(f"{' '.join(self.command[:2])}: {reason[0]}")

    def _drain_stderr(self, process: subprocess.Popen[bytes]) -> None:
        stream = process.stderr
        if stream is None:
            return
        try:
            while data := (stream.read1(65536) if hasattr(stream, "read1") else stream.read(65536)):
                self._stderr_tail += data
                del self._stderr_tail[: max(0, len(self._stderr_tail) - STDERR_TAIL_BYTES)]
        except (OSError, ValueError):
            pass

    @property
    def stderr_tail(self) -> str:
        """The last few KB the child wrote to stderr."""
        return self._stderr_tail.decode("utf-8", "replace")

    def _reader(self) -> None:
        assert self._process is not None and self._process.stdout is not None
        try:
            for record in split_records(self._process.stdout, self._separator):
                try:
                    values = self._parse(record)
                except Exception:
                    values = None
                if values is None:
                    self.skipped += 1
                    continue
                self.records += 1
                self._latest, self._latest_at = values, time.monotonic()
        except (OSError, ValueError) as exc:
            self.error = str(exc)

    def read(self) -> dict[str, float]:
        if not self._latest_at or time.monotonic() - self._latest_at > self._stale_after:
            return {}
        return dict(self._latest)

    def close(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=3)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=3)
        for stream in (process.stdout, process.stderr):
            if stream is not None:
                stream.close()
