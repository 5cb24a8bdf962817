"""``ollama-wire logs``: list, summarise and export recorded interactions."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

import click

from analyzer.cli.output import condense_warnings, emit_records, emit_rows, output_options, save_sqlite
from analyzer.protocol.record import InteractionRecord
from analyzer.store.log import DEFAULT_LOG_DIR, LogError, read_log
from analyzer.store.select import parse_since, select
from analyzer.store.tables import (
    LISTING_COLUMNS,
    SUMMARY_COLUMNS,
    listing_rows,
    summary_rows,
    summary_stats,
    text_table,
)


def _since_option(ctx: click.Context, param: click.Parameter, value: str | None) -> datetime | None:
    """The ``--since`` callback: every bad value is a usage error naming the option."""
    if value is None:
        return None
    try:
        return parse_since(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc), ctx=ctx, param=param) from exc


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
    for message in condense_warnings(warnings):
        click.echo(f"warning: {message}", err=True)
    if warnings and not records:
        raise click.ClickException(f"{log_dir}: no interaction records, only {len(warnings)} line(s) that are not")
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
