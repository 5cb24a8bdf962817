"""``ollama-wire replay``: send recorded requests again to another server, with their arrival pattern."""

from __future__ import annotations

import asyncio
import sys
from datetime import datetime
from pathlib import Path

import click

from analyzer.cli.options import capture_ports_option, moment_option
from analyzer.cli.output import note
from analyzer.protocol.endpoints import OLLAMA_PORT
from analyzer.protocol.untrusted import for_terminal, terminal_cell
from analyzer.replay.client import TargetError, parse_target, probe
from analyzer.replay.plan import ReplayPlan, build_plan, nothing_to_replay, parse_model_map, parse_options
from analyzer.replay.run import Outcome, Pace, Progress, default_label, run_replay
from analyzer.sources import SourceError, read_sources
from analyzer.store.log import DEFAULT_LOG_DIR, InteractionLog, LogError

BAR_WIDTH = 24


def _speed(ctx: click.Context, param: click.Parameter, value: str) -> float | None:
    if value.strip().lower() == "max":
        return None
    try:
        speed = float(value)
    except ValueError:
        speed = 0.0
    if not speed > 0 or speed == float("inf"):
        raise click.BadParameter(f"{value!r}: a factor above 0 (1 = as recorded, 2 = twice as fast) or max")
    return speed


def _concurrency(ctx: click.Context, param: click.Parameter, value: str) -> int | None:
    if value.strip().lower() == "recorded":
        return None
    if not value.strip().isdigit() or int(value) < 1:
        raise click.BadParameter(f"{value!r}: recorded, or a number of requests at once (1 or more)")
    return int(value)


def _clock(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    whole = round(seconds)
    hours, rest = divmod(whole, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


def progress_line(progress: Progress) -> str:
    """``[██████··········]  12/40 done  2 failed  3 in flight  ETA 0:21`` (no escapes: plain characters)."""
    share = progress.done / progress.total if progress.total else 1.0
    filled = int(share * BAR_WIDTH)
    bar = "█" * filled + "·" * (BAR_WIDTH - filled)
    failed = f"  {progress.failed} failed" if progress.failed else ""
    return (
        f"[{bar}] {progress.done}/{progress.total} done{failed}  {progress.in_flight} in flight  "
        f"ETA {_clock(progress.eta_s)}"
    )


def _print_plan(plan: ReplayPlan, target: str, pace: Pace) -> None:
    speed = "max" if pace.speed is None else f"{pace.speed:g}"
    cap = pace.cap(plan)
    click.echo(
        f"would replay {len(plan.requests)} requests to {target} at speed {speed}, "
        f"{'at most ' + str(cap) + ' at once' if cap else 'as many at once as recorded'}: "
        f"about {_clock(pace.duration_s(plan))} (recorded span {_clock(plan.recorded_span_s)})"
    )
    rows = [(terminal_cell(model, 60), terminal_cell(endpoint, 60), count) for model, endpoint, count in plan.counts()]
    width = max([len("model"), *(len(m) for m, _, _ in rows)])
    click.echo(f"  {'model':{width}}  {'requests':>8}  endpoint")
    for model, endpoint, count in rows:
        click.echo(f"  {model:{width}}  {count:>8}  {endpoint}")


def _print_skipped(plan: ReplayPlan) -> None:
    for reason, count in plan.skipped.most_common():
        note(f"skipped {count}: {reason}")


def _summary(outcome: Outcome, target: str, label: str, log_dir: Path, planned: int) -> str:
    ok = len(outcome.records) - outcome.failed
    text = (
        f"replayed {len(outcome.records)} of {planned} requests to {target} (label {for_terminal(label)}) → {log_dir}: "
        f"{ok} ok"
    )
    if outcome.failed:
        worst = sorted(outcome.errors.items(), key=lambda i: -i[1])[:3]
        common = ", ".join(f"{n}× {for_terminal(message)}" for message, n in worst)
        text += f", {outcome.failed} failed ({common})"
    return text


@click.command()
@click.argument("sources", nargs=-1, type=click.Path(path_type=Path))
@click.option("--target", required=True, metavar="URL", help="The server to send to (required; never defaulted).")
@click.option(
    "--since", callback=moment_option, help="Only requests started at or after this: 30m, 2h, 1d, or an ISO time."
)
@click.option("--until", callback=moment_option, help="Only requests started before this (same forms as --since).")
@click.option("--model", "models", multiple=True, help="Only this model (repeatable).")
@click.option(
    "--speed",
    default="1",
    show_default=True,
    callback=_speed,
    help="Scale the recorded gaps between starts: 1 as recorded, 2 twice as fast, max as fast as --concurrency allows.",
)
@click.option(
    "--concurrency",
    default="recorded",
    show_default=True,
    callback=_concurrency,
    help="At most N requests at once; recorded: as they overlapped (with --speed max: the recording's peak).",
)
@click.option(
    "--model-map",
    "model_maps",
    multiple=True,
    metavar="OLD=NEW",
    help="Send requests for model OLD to model NEW (repeatable; the body's model field is rewritten).",
)
@click.option(
    "--option",
    "options",
    multiple=True,
    metavar="NAME=VALUE",
    help="Set a request option in every inference body (repeatable): native ones in options (keep_alive, think, "
    "format at the top level), OpenAI ones at the top level (num_predict as max_tokens); VALUE is JSON or text. "
    "The only change to the bodies besides --model-map, e.g. --option num_ctx=8192.",
)
@click.option("--limit", type=click.IntRange(min=1), help="Only the first N replayable requests.")
@click.option("--label", help="Name of this replay (compare picks it with label:NAME). [default: replay-<UTC time>]")
@click.option(
    "--log-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=DEFAULT_LOG_DIR,
    show_default=True,
    help="Where the replayed records go (source: replay).",
)
@click.option(
    "--dry-run", is_flag=True, help="Print what would be sent (per model and endpoint, duration); send nothing."
)
@click.option("--include-replays", is_flag=True, help="Also send requests that were themselves replays.")
@capture_ports_option
def replay(
    sources: tuple[Path, ...],
    target: str,
    since: datetime | None,
    until: datetime | None,
    models: tuple[str, ...],
    speed: float | None,
    concurrency: int | None,
    model_maps: tuple[str, ...],
    options: tuple[str, ...],
    limit: int | None,
    label: str | None,
    log_dir: Path,
    dry_run: bool,
    include_replays: bool,
    ports: tuple[int, ...],
) -> None:
    """Send recorded requests again to another server — same bodies, same arrival pattern — and record the
    answers the way the proxy does, to compare before and after a change (`ollama-wire compare`).

    SOURCE: interaction-log directories, JSONL/CSV files, captures (default: the addon's log). Only inference
    (generate, chat, embed, OpenAI chat/completions/embeddings, and the newer APIs) and read-only requests are
    sent, never model management. The new records go to --log-dir with source "replay", the label and the id of
    the record each one replays; report, findings, logs and top leave them out unless --include-replays.
    Ctrl-C stops cleanly and keeps what finished.

    \b
    ollama-wire replay --since 2h --target http://127.0.0.1:11435 --label parallel4
    ollama-wire replay logs/night --speed max --concurrency 2 --target http://gpu-box:11434 --dry-run
    ollama-wire compare logs/ollama_interactions label:parallel4
    """
    try:
        where = parse_target(target)
        mapping = parse_model_map(model_maps)
        settings = parse_options(options)
    except (TargetError, ValueError) as exc:
        raise click.BadParameter(str(exc)) from None
    chosen = list(sources) or [DEFAULT_LOG_DIR]
    warnings: list[str] = []
    try:
        records = read_sources(
            chosen,
            since=since,
            until=until,
            models=models,
            warn=warnings.append,
            ports=ports or (OLLAMA_PORT,),
            include_replays=True,  # the plan counts them, so the user hears why they were left out
        )
    except SourceError as exc:
        raise click.ClickException(str(exc)) from None
    for message in warnings[:5]:
        note(f"warning: {message}")
    plan = build_plan(records, model_map=mapping, options=settings, limit=limit, include_replays=include_replays)
    pace = Pace(speed=speed, concurrency=concurrency)
    if not plan.requests:
        raise click.ClickException(nothing_to_replay(plan, [str(p) for p in chosen]))
    _print_skipped(plan)
    if dry_run:
        _print_plan(plan, where.url, pace)
        return
    refused = asyncio.run(probe(where))
    if refused is not None:
        raise click.ClickException(f"target {where.url}: cannot connect: {refused}; nothing was sent")
    try:
        log_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise click.ClickException(f"{log_dir}: cannot write the replay's records: {exc.strerror or exc}") from None
    name = label or default_label()
    tty = sys.stderr.isatty()

    def show(progress: Progress) -> None:
        if tty:
            click.echo("\r" + progress_line(progress) + "\033[K", err=True, nl=False)

    try:
        outcome = run_replay(plan, where, pace=pace, label=name, log=InteractionLog(log_dir), on_progress=show)
    except LogError as exc:
        raise click.ClickException(str(exc)) from None
    if tty:
        click.echo("\r\033[K", err=True, nl=False)
    click.echo(_summary(outcome, where.url, name, log_dir, len(plan.requests)))
    if outcome.stopped:
        click.echo(
            f"stopped: {len(outcome.records)} finished and kept, {outcome.dropped} in flight dropped, "
            f"{outcome.not_sent} not sent",
            err=True,
        )
        sys.exit(130)
    sides = " ".join(str(p) for p in chosen)
    elsewhere = "" if log_dir == DEFAULT_LOG_DIR else f" --log-dir {log_dir}"
    click.echo(f"compare: ollama-wire compare {sides} label:{name}{elsewhere}")
    if outcome.records and outcome.failed == len(outcome.records):
        raise click.ClickException(f"target {where.url}: every request failed; the records say how")
