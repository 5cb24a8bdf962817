"""``ollama-wire logs``: list, summarise and export recorded interactions."""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import click

from analyzer.cli.output import emit_records, output_options
from analyzer.log import DEFAULT_LOG_DIR, LogError, read_log
from analyzer.record import InteractionRecord
from analyzer.tables import LISTING_COLUMNS, listing_rows, summary_rows, text_table

_RELATIVE = re.compile(r"^(\d+(?:\.\d+)?)\s*([smhdw])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_since(value: str, now: datetime | None = None) -> datetime:
    """``30m``, ``2h``, ``1d``, ``1w`` ago, or an ISO date/time (UTC unless it says otherwise)."""
    now = now or datetime.now(UTC)
    match = _RELATIVE.match(value.strip())
    if match:
        return now - timedelta(**{_UNITS[match.group(2)]: float(match.group(1))})
    try:
        when = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError as exc:
        raise click.BadParameter(f"{value!r} is neither a duration like 30m/2h/1d nor an ISO date") from exc
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def _started(record: InteractionRecord) -> datetime | None:
    try:
        return datetime.fromisoformat(record.started_at.replace("Z", "+00:00"))
    except ValueError:
        return None


def select(
    records: Sequence[InteractionRecord],
    *,
    model: str | None = None,
    since: datetime | None = None,
    errors_only: bool = False,
) -> list[InteractionRecord]:
    """Records matching every given filter, oldest first."""
    chosen = []
    for r in records:
        if model and r.model != model:
            continue
        if errors_only and not (r.error or (r.status is not None and r.status >= 400)):
            continue
        if since is not None:
            started = _started(r)
            if started is None or started < since:
                continue
        chosen.append(r)
    chosen.sort(key=lambda r: r.started_at)
    return chosen


@click.command()
@click.option(
    "--log-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=DEFAULT_LOG_DIR,
    show_default=True,
    help="The interaction log written by the addon (and by analyze --log-dir).",
)
@click.option(
    "-n",
    "--count",
    type=click.IntRange(min=0),
    default=20,
    show_default=True,
    help="Show the newest N interactions; 0 shows all.",
)
@click.option("--model", help="Only this model.")
@click.option("--since", help="Only interactions started after this: 30m, 2h, 1d, or an ISO date/time.")
@click.option("--errors", "errors_only", is_flag=True, help="Only interactions that ended in an error.")
@click.option("--summary", is_flag=True, help="One row per model: count, errors, TTFT p50/p95, tokens/s.")
@output_options
def logs(
    log_dir: Path,
    count: int,
    model: str | None,
    since: str | None,
    errors_only: bool,
    summary: bool,
    fmt: str,
    output: Path | None,
    sqlite_path: Path | None,
) -> None:
    """List recorded Ollama interactions, newest last, like `llm logs`.

    \b
    ollama-wire logs                      the last 20 interactions
    ollama-wire logs --summary            per model: TTFT p50/p95, tokens/s
    ollama-wire logs --since 2h --errors  what failed in the last two hours
    ollama-wire logs -n 0 --csv -o all.csv
    ollama-wire logs -n 0 --sqlite interactions.db
    """
    since_at = parse_since(since) if since else None
    warnings: list[str] = []
    try:
        records = read_log(log_dir, warn=warnings.append)
    except LogError as exc:
        raise click.ClickException(str(exc)) from exc
    for message in warnings:
        click.echo(f"warning: {message}", err=True)
    chosen = select(records, model=model, since=since_at, errors_only=errors_only)
    if count:
        chosen = chosen[-count:]

    def render(rows: Sequence[InteractionRecord]) -> str:
        if not rows:
            return f"no interactions in {log_dir}\n"
        if summary:
            return text_table(summary_rows(rows))
        return text_table(listing_rows(rows), LISTING_COLUMNS)

    emit_records(chosen, fmt, output, sqlite_path, table=render)
