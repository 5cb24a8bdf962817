"""A resource timeline recorded to a file for a while (one capture snapshot, ``resources --record``)."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import IO

from analyzer.resources.registry import Opened, Target, open_samplers
from analyzer.resources.timeline import SamplingThread, Timeline, open_timeline_file


class TimelineRecording:
    """Samples ``spec``'s sources into ``path`` (0600) from ``start()`` until ``stop()``."""

    def __init__(self, spec: str, target: Target, path: Path) -> None:
        self.spec = spec
        self.target = target
        self.path = path
        self.opened = Opened()
        self.samples = 0
        self._thread: SamplingThread | None = None
        self._sink: IO[str] | None = None

    def start(self) -> TimelineRecording:
        """Open the sources and start sampling; with no source available nothing is written."""
        self.opened = open_samplers(self.spec, self.target)
        if not self.opened.samplers:
            return self
        self._sink = open_timeline_file(self.path)
        self._thread = SamplingThread(self.opened.samplers, Timeline(), self.target.interval_ms, sink=self._sink)
        self._thread.start()
        return self

    def stop(self) -> int:
        """Stop sampling, close the sources and the file; returns how many samples were written."""
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.sample_once()  # one last reading at the end, so the window's tail is covered
            thread.stop()
            self.samples = len(thread.timeline)
        if self._sink is not None:
            with contextlib.suppress(OSError):
                self._sink.close()
            self._sink = None
        return self.samples

    def discard(self) -> None:
        self.stop()
        self.path.unlink(missing_ok=True)
