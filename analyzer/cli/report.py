"""``ollama-wire report`` (the HTML page or JSON) and ``ollama-wire findings`` (the terminal view)."""

from __future__ import annotations

import functools
import json
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import click

from analyzer.cli.logs import missing_log_message
from analyzer.cli.options import capture_ports_option, moment_option, replays_option
from analyzer.cli.output import note, write_output
from analyzer.protocol.endpoints import OLLAMA_PORT
from analyzer.report.analysis import Analysis, analyze_requests
from analyzer.report.load import load_requests
from analyzer.report.machine import cost_line
from analyzer.report.try_it import add_try_commands
from analyzer.resources.cost import Prices, PricesError, load_prices, prices_from_config
from analyzer.sources import SourceError
from analyzer.store.log import DEFAULT_LOG_DIR

DEFAULT_REPORT = Path("ollama-report.html")
PROGRESS_AFTER_S = 1.0


def source_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """SOURCE arguments plus ``--log-dir``, ``--since``, ``--until`` and ``--model`` (repeatable)."""

    @click.argument("sources", nargs=-1, type=click.Path(path_type=Path))
    @click.option(
        "--log-dir",
        "log_dirs",
        multiple=True,
        type=click.Path(file_okay=False, path_type=Path),
        help=f"An interaction log directory (repeatable). Without SOURCE or --log-dir: {DEFAULT_LOG_DIR}.",
    )
    @click.option(
        "--since",
        callback=moment_option,
        help="Only requests started at or after this: 30m, 2h, 1d, 1w ago, or an ISO date/time (UTC unless given).",
    )
    @click.option("--until", callback=moment_option, help="Only requests started before this (same forms as --since).")
    @click.option("--model", "models", multiple=True, help="Only this model (repeatable).")
    @capture_ports_option
    @replays_option
    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        return command(*args, **kwargs)

    return wrapper


def prices_option(command: Callable[..., Any]) -> Callable[..., Any]:
    """``--prices FILE`` (default: ``prices`` in the config file), as ``logs`` has it."""
    return click.option(
        "--prices",
        "prices_path",
        type=click.Path(dir_okay=False, path_type=Path),
        help="A YAML prices file (kwh: USD per kWh; models: {NAME: {input, output}} in USD per million tokens): "
        "adds what the period cost in electricity (where energy was sampled) and on a hosted API, in total and "
        "per model; derived now, never stored. Default: 'prices' in the config file ($OLLAMA_WIRE_CONFIG or "
        "~/.config/ollama-wire/config.yaml), if set.",
    )(command)


def read_prices(path: Path | None) -> Prices | None:
    """The prices file's prices, else the config file's, else None; a bad file → one line naming it."""
    try:
        return load_prices(path) if path is not None else prices_from_config()
    except PricesError as exc:
        raise click.ClickException(str(exc)) from exc


@contextmanager
def progress(label: str) -> Iterator[None]:
    """After PROGRESS_AFTER_S, show ``label`` and the seconds spent on stderr (only when it is a terminal)."""
    if not sys.stderr.isatty():
        yield
        return
    done = threading.Event()
    started = time.monotonic()

    def tick() -> None:
        shown = False
        while not done.wait(0.25):
            elapsed = time.monotonic() - started
            if elapsed >= PROGRESS_AFTER_S:
                sys.stderr.write(f"\r{label}… {elapsed:.1f} s")
                sys.stderr.flush()
                shown = True
        if shown:
            sys.stderr.write(f"\r{label}… {time.monotonic() - started:.1f} s, done\n")
            sys.stderr.flush()

    thread = threading.Thread(target=tick, daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join(timeout=1.0)


def load_analysis(
    sources: tuple[Path, ...],
    log_dirs: tuple[Path, ...],
    since: datetime | None,
    until: datetime | None,
    models: tuple[str, ...],
    ports: tuple[int, ...] = (),
    prices: Prices | None = None,
    include_replays: bool = False,
) -> tuple[Analysis, list[Path]]:
    """Read every source (default: the addon's log directory) and analyze the records (costs at ``prices``).
    Bad sources → one line."""
    chosen = [*sources, *log_dirs]
    if not chosen:
        if not DEFAULT_LOG_DIR.exists():
            raise click.ClickException(missing_log_message(DEFAULT_LOG_DIR))
        chosen = [DEFAULT_LOG_DIR]
    for path in log_dirs:
        if not path.is_dir():
            raise click.ClickException(f"{path}: no such log directory")
    warnings: list[str] = []
    try:
        with progress("reading records"):
            requests, unreadable = load_requests(
                chosen,
                since=since,
                until=until,
                models=models,
                warn=warnings.append,
                ports=ports or (OLLAMA_PORT,),
                include_replays=include_replays,
            )
    except SourceError as exc:
        raise click.ClickException(str(exc)) from exc
    except OSError as exc:
        raise click.ClickException(f"{exc.filename or 'source'}: cannot read: {exc.strerror or exc}") from exc
    for message in warnings[:20]:
        note(f"warning: {message}")
    if len(warnings) > 20:
        note(f"warning: … and {len(warnings) - 20} more skipped lines")
    with progress("analyzing"):
        analysis = analyze_requests(requests, unreadable, prices)
    add_try_commands(analysis.findings, [str(p) for p in chosen])
    return analysis, chosen


def write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` readable by the owner only (the page holds prompts)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        if path.is_file():
            os.fchmod(fd, 0o600)  # an existing file keeps its mode otherwise
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
    except OSError as exc:
        raise click.ClickException(f"{path}: cannot write: {exc.strerror or exc}") from exc


@click.command()
@source_options
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    help=f"Where to write the page (default {DEFAULT_REPORT}); with --json, the JSON (default: standard output).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the findings and headline numbers as JSON instead.")
@prices_option
def report(
    sources: tuple[Path, ...],
    log_dirs: tuple[Path, ...],
    since: datetime | None,
    until: datetime | None,
    models: tuple[str, ...],
    ports: tuple[int, ...],
    include_replays: bool,
    output: Path | None,
    as_json: bool,
    prices_path: Path | None,
) -> None:
    """What happened and why: an HTML performance report with plots and findings.

    SOURCE: interaction-log directories, JSONL/CSV files this project wrote, packet captures (analyzed on the
    fly, like analyze-pcap). Writes one self-contained page (scripts, styles and data inline; opens from
    file:// without network). Findings have stable codes (cold_load, model_thrash, queueing,
    context_truncated, length_cutoff, stall, slow_generation, capture_loss, and one per error category);
    see docs/report.md.

    \b
    ollama-wire report                              the addon's log → ollama-report.html
    ollama-wire report logs/demo --since 12h -o night.html
    ollama-wire report capture.pcap --json | jq '.findings[].code'
    ollama-wire report --prices prices.yaml         electricity and hosted-API cost of the period
    """
    prices = read_prices(prices_path)
    analysis, chosen = load_analysis(sources, log_dirs, since, until, models, ports, prices, include_replays)
    if as_json:
        text = json.dumps(analysis.to_dict(), ensure_ascii=False, indent=1) + "\n"
        write_output(output, lambda out: out.write(text))
        return
    from analyzer.report.page import render_page

    target = output or DEFAULT_REPORT
    with progress("writing the page"):
        page = render_page(analysis, sources=[str(p) for p in chosen])
    write_private(target, page)
    found = len(analysis.findings)
    click.echo(
        f"wrote {target} ({len(page) / 1e6:.1f} MB): {analysis.headline['requests']} requests, "
        f"{found} finding{'' if found == 1 else 's'}",
        err=True,
    )
    spent = cost_line(analysis.headline)
    if spent:
        click.echo(spent, err=True)


@click.command()
@source_options
@click.option("--json", "as_json", is_flag=True, help="The findings and headline numbers as JSON (as report --json).")
@prices_option
def findings(
    sources: tuple[Path, ...],
    log_dirs: tuple[Path, ...],
    since: datetime | None,
    until: datetime | None,
    models: tuple[str, ...],
    ports: tuple[int, ...],
    include_replays: bool,
    as_json: bool,
    prices_path: Path | None,
) -> None:
    """Print what went wrong and what to change, in the terminal (the report's findings).

    Same sources, filters and --prices as `ollama-wire report`. Each finding: severity, stable code, what was
    seen (with numbers), what to change, when, and the ids of the records that show it. With prices, a line
    on what the period cost.

    \b
    ollama-wire findings
    ollama-wire findings logs/demo --since 2h --model llama3.2
    """
    from analyzer.report.terminal import render_findings

    prices = read_prices(prices_path)
    analysis, _ = load_analysis(sources, log_dirs, since, until, models, ports, prices, include_replays)
    text = json.dumps(analysis.to_dict(), ensure_ascii=False, indent=1) + "\n" if as_json else render_findings(analysis)
    write_output(None, lambda out: out.write(text))
