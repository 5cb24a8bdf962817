"""Choosing records: time expressions (``2h``, ISO dates) and the filters every reading command shares."""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

from analyzer.protocol.record import InteractionRecord

SOURCE_REPLAY = "replay"  # the ``source`` of records ``ollama-wire replay`` wrote


def counts_as_traffic(source: str | None, include_replays: bool = False) -> bool:
    """The one rule every reading command (report, findings, logs, top, compare) applies to a record's ``source``:
    records a replay wrote are left out of the picture of real traffic unless ``include_replays``."""
    return include_replays or source != SOURCE_REPLAY


_RELATIVE = re.compile(r"^(\d+(?:\.\d+)?)\s*([smhdw])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_since(value: str, now: datetime | None = None) -> datetime:
    """``30m``, ``2h``, ``1d``, ``1w`` ago, or an ISO date/time (UTC unless it says otherwise).

    Raises ValueError, with a message quoting ``value``, for anything else (including a duration
    reaching back before the year 1).
    """
    now = now or datetime.now(UTC)
    text = value.strip()
    match = _RELATIVE.match(text)
    if match:
        try:
            return now - timedelta(**{_UNITS[match.group(2)]: float(match.group(1))})
        except OverflowError as exc:
            raise ValueError(f"{value!r} reaches back too far") from exc
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise ValueError(f"{value!r} is neither a duration like 30m/2h/1d nor an ISO date") from exc
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def started_at(record: InteractionRecord) -> datetime | None:
    """When the record's request started, as an aware UTC datetime; None when ``started_at`` is unreadable."""
    try:
        started = datetime.fromisoformat(record.started_at.replace("Z", "+00:00"))
    except ValueError:
        return None
    return started if started.tzinfo else started.replace(tzinfo=UTC)


def select(
    records: Iterable[InteractionRecord],
    *,
    model: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    errors_only: bool = False,
    include_replays: bool = False,
) -> list[InteractionRecord]:
    """Records matching every given filter, oldest first (replayed ones only with ``include_replays``)."""
    chosen = []
    for r in records:
        if not counts_as_traffic(r.source, include_replays):
            continue
        if model and r.model != model:
            continue
        if errors_only and not (r.error or (r.status is not None and r.status >= 400)):
            continue
        if since is not None:
            started = started_at(r)
            if started is None or started < since:
                continue
        if until is not None:
            started = started_at(r)
            if started is None or started >= until:
                continue
        chosen.append(r)
    chosen.sort(key=lambda r: r.started_at)
    return chosen
