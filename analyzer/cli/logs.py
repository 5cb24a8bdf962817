"""``ollama-wire logs``: list, summarise and export recorded interactions."""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import click

from analyzer.cli.output import emit_records, emit_rows, output_options, save_sqlite
from analyzer.log import DEFAULT_LOG_DIR, LogError, read_log
from analyzer.record import InteractionRecord
from analyzer.tables import LISTING_COLUMNS, SUMMARY_COLUMNS, listing_rows, summary_rows, summary_stats, text_table

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


def _since_option(ctx: click.Context, param: click.Parameter, value: str | None) -> datetime | None:
    """The ``--since`` callback: every bad value is a usage error naming the option."""
    if value is None:
        return None
    try:
        return parse_since(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc), ctx=ctx, param=param) from exc


def _started(record: InteractionRecord) -> datetime | None:
    try:
        started = datetime.fromisoformat(record.started_at.replace("Z", "+00:00"))
    except ValueError:
        return None
    return started if started.tzinfo else started.replace(tzinfo=UTC)


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


def missing_log_message(log_dir: Path) -> str:
    """What ``logs`` says when the log directory is not there (usually: run from another directory)."""
    return (
        f"no interactions: {log_dir} does not exist (the addon writes to {DEFAULT_LOG_DIR} relative to "
        "where mitmdump runs; use --log-dir)"
    )


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
    help="Show the newest N interactions; 0 shows all. Not applied to --summary.",
)
@click.option("--model", help="Only this model.")
@click.option(
    "--since",
    callback=_since_option,
    help="Only interactions started after this: 30m, 2h, 1d, 1w ago, or an ISO date/time (UTC unless given).",
)
@click.option("--errors", "errors_only", is_flag=True, help="Only interactions that ended in an error.")
@click.option(
    "--summary",
    is_flag=True,
    help="One row per model over every matching interaction: count, errors, TTFT p50/p95, tokens/s. "
    "With --csv/--jsonl/--json the summary rows in that format; --sqlite receives the matching records.",
)
@output_options
def logs(
    log_dir: Path,
    count: int,
    model: str | None,
    since: datetime | None,
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
    ollama-wire logs --summary --csv      the same as CSV
    ollama-wire logs --since 2h --errors  what failed in the last two hours
    ollama-wire logs -n 0 --csv -o all.csv
    ollama-wire logs -n 0 --sqlite interactions.db
    """
    missing = not log_dir.exists()
    warnings: list[str] = []
    try:
        records = read_log(log_dir, warn=warnings.append)
    except LogError as exc:
        raise click.ClickException(str(exc)) from exc
    for message in warnings:
        click.echo(f"warning: {message}", err=True)
    if missing and fmt != "table":
        click.echo(missing_log_message(log_dir), err=True)
    chosen = select(records, model=model, since=since, errors_only=errors_only)

    def empty_message() -> str:
        return (missing_log_message(log_dir) if missing else f"no interactions in {log_dir}") + "\n"

    if summary:
        if sqlite_path is not None:
            save_sqlite(chosen, sqlite_path)
        emit_rows(
            summary_stats(chosen),
            SUMMARY_COLUMNS,
            fmt,
            output,
            table=lambda: text_table(summary_rows(chosen)) if chosen else empty_message(),
        )
        return

    def render(rows: Sequence[InteractionRecord]) -> str:
        if not rows:
            return empty_message()
        return text_table(listing_rows(rows), LISTING_COLUMNS)

    emit_records(chosen[-count:] if count else chosen, fmt, output, sqlite_path, table=render)
