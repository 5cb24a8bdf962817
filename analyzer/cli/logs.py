"""``ollama-wire logs``: list, summarise and export recorded interactions."""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

import click

from analyzer.cli.options import moment_option, replays_option
from analyzer.cli.output import (
    FILE_FORMATS,
    condense_warnings,
    emit_records,
    emit_rows,
    note,
    output_options,
    save_sqlite,
)
from analyzer.protocol.record import COLUMNS, InteractionRecord, scalar_row
from analyzer.resources.cost import (
    COST_COLUMNS,
    PricesError,
    cost_columns,
    costs_per_model,
    load_prices,
    prices_from_config,
)
from analyzer.store.log import DEFAULT_LOG_DIR, LogError
from analyzer.store.query import matching_records, matching_summary
from analyzer.store.tables import LISTING_COLUMNS, SUMMARY_COLUMNS, format_summary, listing_rows, text_table


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
    callback=moment_option,
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
@click.option(
    "--prices",
    "prices_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="A YAML prices file (kwh: USD per kWh; models: {NAME: {input, output}} in USD per million tokens): "
    "adds cost_energy_usd and cost_api_usd, derived now, never stored. Default: 'prices' in the config file "
    "($OLLAMA_WIRE_CONFIG or ~/.config/ollama-wire/config.yaml), if set.",
)
@replays_option
@output_options
def logs(
    log_dir: Path,
    count: int,
    model: str | None,
    since: datetime | None,
    errors_only: bool,
    summary: bool,
    prices_path: Path | None,
    include_replays: bool,
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
    ollama-wire logs --prices prices.yaml  what the night cost: electricity, and on a hosted API
    """
    try:
        prices = load_prices(prices_path) if prices_path is not None else prices_from_config()
    except PricesError as exc:
        raise click.ClickException(str(exc)) from exc
    missing = not log_dir.exists()
    warnings: list[str] = []
    progress = Progress("reading the log")
    chosen: list[InteractionRecord] = []
    stats: list[dict[str, object]] = []
    try:
        if summary:  # --sqlite receives whole records, and costs need each record
            stats, chosen = matching_summary(
                log_dir,
                model=model,
                since=since,
                errors_only=errors_only,
                with_records=sqlite_path is not None or prices is not None,
                warn=warnings.append,
                progress=progress,
                include_replays=include_replays,
            )
        else:
            chosen = matching_records(
                log_dir,
                count=count,
                model=model,
                since=since,
                errors_only=errors_only,
                warn=warnings.append,
                progress=progress,
                include_replays=include_replays,
            )
    except LogError as exc:
        raise click.ClickException(str(exc)) from exc
    finally:
        progress.close()
    for message in condense_warnings(warnings):
        note(f"warning: {message}")
    unfiltered = model is None and since is None and not errors_only
    if warnings and unfiltered and not chosen and not stats:
        raise click.ClickException(f"{log_dir}: no interaction records, only {len(warnings)} line(s) that are not")
    if missing and fmt != "table":
        click.echo(missing_log_message(log_dir), err=True)

    def empty_message() -> str:
        return (missing_log_message(log_dir) if missing else f"no interactions in {log_dir}") + "\n"

    if summary:
        if sqlite_path is not None:
            save_sqlite(chosen, sqlite_path)
        shown = format_summary(stats)
        columns: tuple[str, ...] = SUMMARY_COLUMNS
        if prices is not None:
            columns = (*SUMMARY_COLUMNS, *COST_COLUMNS)
            costs = costs_per_model(chosen, prices)
            for stat, row in zip(stats, shown, strict=True):
                stat.update(costs[str(stat["model"])])
                row.update({name: _usd(value) for name, value in costs[str(stat["model"])].items()})
        emit_rows(
            stats,
            columns,
            fmt,
            output,
            table=lambda: text_table(shown, columns) if stats else empty_message(),
        )
        return

    def render(rows: Sequence[InteractionRecord]) -> str:
        if not rows:
            return empty_message()
        if prices is None:
            return text_table(listing_rows(rows), LISTING_COLUMNS)
        listed = listing_rows(rows)
        for row, record in zip(listed, rows, strict=True):
            row.update({name: _usd(value) for name, value in cost_columns(record, prices).items()})
        return text_table(listed, (*LISTING_COLUMNS, *COST_COLUMNS))

    newest = chosen  # already the newest ``count`` (or every match)
    if prices is not None and fmt in FILE_FORMATS:
        if sqlite_path is not None:
            save_sqlite(newest, sqlite_path)
        priced = [
            (scalar_row(r) if fmt.startswith("csv") else r.to_dict()) | cost_columns(r, prices)
            for r in sorted(newest, key=lambda r: r.started_at)
        ]
        emit_rows(priced, (*COLUMNS, *COST_COLUMNS), fmt, output, table=lambda: "")
        return
    emit_records(newest, fmt, output, sqlite_path, table=render)


def _usd(value: float | None) -> str:
    return "" if value is None else f"{value:.6f}"


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
