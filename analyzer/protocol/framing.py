"""Incremental splitters for streamed response bodies: NDJSON lines and Server-Sent Events.

Both take body bytes in any fragmentation (a fragment may end inside a line, inside a UTF-8
sequence or inside ``\\r\\n``) and hand back complete units. Partial input is bounded: a unit
longer than ``max_unit_bytes`` is skipped up to its end and counted in ``oversized``.
"""

from __future__ import annotations


class LineSplitter:
    """Splits a byte stream on ``\\n`` into complete lines (without the newline)."""

    def __init__(self, max_unit_bytes: int, *, oversized_marker: bytes | None = None) -> None:
        self._buffer = bytearray()
        self._max = max_unit_bytes
        self._skipping = False  # discarding an over-long line up to its newline
        self._marker = oversized_marker  # stands in for a dropped line, for callers that must know
        self.oversized = 0

    def feed(self, data: bytes) -> list[bytes]:
        """Add a fragment; return the lines it completed."""
        if not self._buffer and not self._skipping:
            # Fast path (the usual fragment: whole lines, nothing carried over): one split in C.
            lines = data.split(b"\n")
            rest = lines.pop()
            if len(rest) <= self._max and (not lines or max(map(len, lines)) <= self._max):
                if rest:
                    self._buffer += rest
                return lines
        lines = []
        start = 0
        while True:
            newline = data.find(b"\n", start)
            if newline < 0:
                break
            if self._skipping:
                self._skipping = False
                if self._marker is not None:
                    lines.append(self._marker)
            elif len(self._buffer) + newline - start > self._max:
                self.oversized += 1  # a whole over-long line in one fragment: skipped like a buffered one
                if self._marker is not None:
                    lines.append(self._marker)
            else:
                self._buffer += data[start:newline]
                lines.append(bytes(self._buffer))
            self._buffer.clear()
            start = newline + 1
        if not self._skipping:
            self._buffer += data[start:]
            if len(self._buffer) > self._max:
                self._buffer.clear()
                self._skipping = True
                self.oversized += 1
        return lines

    def flush(self) -> bytes | None:
        """The unterminated last line, if any (end of body)."""
        if self._skipping or not self._buffer:
            return None
        rest = bytes(self._buffer)
        self._buffer.clear()
        return rest


_DROPPED_LINE = b"\x00dropped"


class SseSplitter:
    """Splits a ``text/event-stream`` body into the ``data`` payload of each event.

    Events end at a blank line; several ``data:`` lines of one event are joined with ``\\n``
    (as the SSE spec says); ``event:``, ``id:``, ``retry:`` and comment lines are ignored.
    """

    def __init__(self, max_unit_bytes: int) -> None:
        self._lines = LineSplitter(max_unit_bytes, oversized_marker=_DROPPED_LINE)
        self._data: list[bytes] = []
        self._data_size = 0
        self._max = max_unit_bytes
        self._skipping_event = False  # an over-long event is dropped up to its blank line
        self.oversized = 0

    def feed(self, data: bytes) -> list[bytes]:
        """Add a fragment; return the data payloads of the events it completed."""
        events: list[bytes] = []
        for line in self._lines.feed(data):
            self._take_line(line, events)
        return events

    def flush(self) -> list[bytes]:
        """Events left at the end of the body (an unterminated last event still counts)."""
        events: list[bytes] = []
        rest = self._lines.flush()
        if rest is not None:
            self._take_line(rest, events)
        self._dispatch(events)
        return events

    def _take_line(self, line: bytes, events: list[bytes]) -> None:
        if line.endswith(b"\r"):
            line = line[:-1]
        if not line:
            if self._skipping_event:
                self._skipping_event = False
                return
            self._dispatch(events)
            return
        if self._skipping_event:
            return
        if line is _DROPPED_LINE:  # an over-long line: its whole event goes
            self._data.clear()
            self._data_size = 0
            self._skipping_event = True
            return
        if line.startswith(b"data:"):
            value = line[5:]
            if value.startswith(b" "):
                value = value[1:]
            self._data_size += len(value)
            if self._data_size > self._max:
                self.oversized += 1
                self._data.clear()
                self._data_size = 0
                self._skipping_event = True
                return
            self._data.append(value)

    def _dispatch(self, events: list[bytes]) -> None:
        if self._data:
            events.append(b"\n".join(self._data))
        self._data.clear()
        self._data_size = 0

    @property
    def oversized_total(self) -> int:
        return self.oversized + self._lines.oversized
