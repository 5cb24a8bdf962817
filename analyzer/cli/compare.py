"""``ollama-wire compare``: a recorded run against a replay of it (or two replays), before/after."""

from __future__ import annotations

import json
from pathlib import Path

import click

from analyzer.cli.options import capture_ports_option
from analyzer.cli.output import note, write_output
from analyzer.cli.report import write_private
from analyzer.protocol.endpoints import OLLAMA_PORT
from analyzer.protocol.untrusted import for_terminal
from analyzer.replay.compare import CompareError, load_side
from analyzer.replay.compare import compare as compare_sides
from analyzer.replay.compare_text import render_comparison
from analyzer.store.log import DEFAULT_LOG_DIR


@click.command()
@click.argument("baseline")
@click.argument("candidate")
@click.option("--json", "as_json", is_flag=True, help="The comparison as JSON (for scripts).")
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write a self-contained HTML page (side-by-side distributions, paired timeline, findings diff).",
)
@click.option(
    "--log-dir",
    "log_dirs",
    multiple=True,
    type=click.Path(file_okay=False, path_type=Path),
    help=f"Where label:NAME sides are looked up (repeatable). [default: {DEFAULT_LOG_DIR}]",
)
@capture_ports_option
def compare(
    baseline: str,
    candidate: str,
    as_json: bool,
    output: Path | None,
    log_dirs: tuple[Path, ...],
    ports: tuple[int, ...],
) -> None:
    """Compare two runs of the same requests: a recorded log and a replay of it, or two replays.

    Each side is a SOURCE (log directory, JSONL/CSV file, capture) or label:NAME (the replay `ollama-wire
    replay --label NAME` wrote, found in --log-dir). Requests are paired by the record each replays; per model:
    TTFT p50/p95, tokens/s, hidden wait, load, total, errors, tokens — baseline, candidate, change, and the noise
    (bootstrap) the change must exceed; which findings were resolved, are new, or kept; identical outputs where
    the requests were deterministic (seed and temperature 0). The verdict sentence comes first.

    \b
    ollama-wire compare logs/ollama_interactions label:parallel4
    ollama-wire compare label:before label:after --json | jq .verdict
    ollama-wire compare logs/night label:keepalive -o compare.html
    """
    dirs = list(log_dirs) or [DEFAULT_LOG_DIR]
    warnings: list[str] = []
    try:
        before = load_side(baseline, label_dirs=dirs, warn=warnings.append, ports=ports or (OLLAMA_PORT,))
        after = load_side(candidate, label_dirs=dirs, warn=warnings.append, ports=ports or (OLLAMA_PORT,))
        result = compare_sides(before, after)
    except CompareError as exc:
        raise click.ClickException(for_terminal(exc)) from None
    for message in warnings[:5]:
        note(f"warning: {message}")
    if output is not None:
        from analyzer.replay.compare_page import render_compare_page

        write_private(output, render_compare_page(result))
        click.echo(f"wrote {output}", err=True)
    text = json.dumps(result.to_dict(), ensure_ascii=False, indent=1) + "\n" if as_json else render_comparison(result)
    write_output(None, lambda out: out.write(text))
