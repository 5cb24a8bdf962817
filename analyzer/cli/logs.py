"""``ollama-wire logs``: list, summarise and export recorded interactions."""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

import click

from analyzer.cli.output import emit_records, emit_rows, output_options, save_sqlite
from analyzer.protocol.record import InteractionRecord
from analyzer.store.digest import summarize_log
from analyzer.store.log import DEFAULT_LOG_DIR, LogError, read_log
from analyzer.store.select import parse_since, select
from analyzer.store.tables import (
    LISTING_COLUMNS,
    SUMMARY_COLUMNS,
    format_summary,
    listing_rows,
    summary_stats,
    text_table,
)
from analyzer.store.tail import newest_records


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
    "With --csv/--jsonl/--json the summary rows in that format; --sqlite receives the matching records. "
    "The fields it needs are kept per daily file in <log-dir>/.summary-cache (no prompt text).",
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

    Reads the log from its end: only the daily files and lines the listing needs.

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
    progress = Progress("reading the log")
    chosen: list[InteractionRecord] = []
    stats: list[dict[str, object]] = []
    try:
        if summary and sqlite_path is None:  # fast path: only the fields a summary needs, cached per day
            stats = summarize_log(
                log_dir, since=since, model=model, errors_only=errors_only, warn=warnings.append, progress=progress
            )
        elif summary:  # --sqlite receives whole records
            chosen = select(read_log(log_dir, warn=warnings.append), model=model, since=since, errors_only=errors_only)
            stats = summary_stats(chosen)
        elif not count and since is None:  # everything: one forward pass
            chosen = select(read_log(log_dir, warn=warnings.append), model=model, errors_only=errors_only)
        else:  # from the end of the log: only the files and lines needed
            chosen = newest_records(
                log_dir,
                count=count,
                since=since,
                model=model,
                errors_only=errors_only,
                warn=warnings.append,
                progress=progress,
            )
    except LogError as exc:
        raise click.ClickException(str(exc)) from exc
    finally:
        progress.close()
    for message in warnings:
        click.echo(f"warning: {message}", err=True)
    if missing and fmt != "table":
        click.echo(missing_log_message(log_dir), err=True)

    def empty_message() -> str:
        return (missing_log_message(log_dir) if missing else f"no interactions in {log_dir}") + "\n"

    if summary:
        if sqlite_path is not None:
            save_sqlite(chosen, sqlite_path)
        emit_rows(
            stats,
            SUMMARY_COLUMNS,
            fmt,
            output,
            table=lambda: text_table(format_summary(stats)) if stats else empty_message(),
        )
        return

    def render(rows: Sequence[InteractionRecord]) -> str:
        if not rows:
            return empty_message()
        return text_table(listing_rows(rows), LISTING_COLUMNS)

    emit_records(chosen, fmt, output, sqlite_path, table=render)


class Progress:
    """``reading the log: 12/91 files`` on stderr, only when stderr is a terminal and after the first second."""

    def __init__(self, label: str, delay_s: float = 1.0) -> None:
        self.label = label
        self.delay_s = delay_s
        self.started = time.monotonic()
        self.shown = False
        self.enabled = sys.stderr.isatty()

    def __call__(self, done: int, total: int) -> None:
        if self.enabled and time.monotonic() - self.started >= self.delay_s:
            click.echo(f"\r{self.label}: {done}/{total} files", err=True, nl=False)
            self.shown = True

    def close(self) -> None:
        """Erase the progress line, if one was shown."""
        if self.shown:
            click.echo("\r\033[K", err=True, nl=False)
            self.shown = False
