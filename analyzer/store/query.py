"""What ``logs`` asks of the log, answered the cheapest way; notebooks and other commands can ask the same.

``matching_records``: the newest N records that match (one forward pass when everything is wanted, else from
the log's end, touching only the files and lines needed). ``matching_summary``: one row per model, from the
digest's cached fields when no record is needed, else from the records themselves.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from analyzer.protocol.record import InteractionRecord
from analyzer.store.digest import summarize_log
from analyzer.store.log import read_log
from analyzer.store.select import select
from analyzer.store.tables import summary_stats
from analyzer.store.tail import newest_records

Warn = Callable[[str], object] | None
Progress = Callable[[int, int], object] | None


def matching_records(
    log_dir: Path,
    *,
    count: int = 0,
    model: str | None = None,
    since: datetime | None = None,
    errors_only: bool = False,
    warn: Warn = None,
    progress: Progress = None,
    include_replays: bool = False,
) -> list[InteractionRecord]:
    """The newest ``count`` records (0: all) of ``model`` started since ``since`` (errors only if asked), oldest
    first; replayed ones only with ``include_replays``. Raises ``LogError`` for a log that cannot be read; lines
    that are not records go to ``warn``."""
    if not count and since is None:  # everything: one forward pass
        records = read_log(log_dir, warn=warn)
        return select(records, model=model, errors_only=errors_only, include_replays=include_replays)
    return newest_records(
        log_dir,
        count=count,
        since=since,
        model=model,
        errors_only=errors_only,
        warn=warn,
        progress=progress,
        include_replays=include_replays,
    )


def matching_summary(
    log_dir: Path,
    *,
    model: str | None = None,
    since: datetime | None = None,
    errors_only: bool = False,
    with_records: bool = False,
    warn: Warn = None,
    progress: Progress = None,
    include_replays: bool = False,
) -> tuple[list[dict[str, Any]], list[InteractionRecord]]:
    """Per-model summary rows (``SUMMARY_COLUMNS``) of every matching record, and — ``with_records`` only (for a
    SQLite copy or costs, which need whole records) — those records. Without it the records are not read: the
    digest's fields, cached per daily file, are enough (the fast path)."""
    if not with_records:
        rows = summarize_log(
            log_dir,
            since=since,
            model=model,
            errors_only=errors_only,
            warn=warn,
            progress=progress,
            include_replays=include_replays,
        )
        return rows, []
    records = read_log(log_dir, warn=warn)
    chosen = select(records, model=model, since=since, errors_only=errors_only, include_replays=include_replays)
    return summary_stats(chosen), chosen
