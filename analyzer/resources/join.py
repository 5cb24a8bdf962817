"""Joining a capture's resource timeline (``NAME.resources.jsonl`` beside ``NAME.pcap``) to its records by time."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from analyzer.protocol.record import InteractionRecord
from analyzer.resources.attribution import attribute_records
from analyzer.resources.timeline import TimelineError, read_timeline, timeline_path


def join_timeline(capture: Path, records: list[InteractionRecord], warn: Callable[[str], None] | None = None) -> int:
    """Fill the resource columns of ``records`` from the timeline saved beside ``capture``, if there is one.

    Returns how many records got resource figures. An unreadable timeline is reported through ``warn`` (one line
    naming the file) and leaves the records as they are: the capture itself is still good.
    """
    path = timeline_path(Path(capture))
    if not records or not path.exists():
        return 0
    try:
        timeline = read_timeline(path)
    except TimelineError as exc:
        if warn is not None:
            warn(str(exc))
        return 0
    return attribute_records(records, timeline)
