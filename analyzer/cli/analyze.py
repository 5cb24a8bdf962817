"""``analyze-pcap`` (also ``ollama-wire analyze``): captures → Ollama interactions and timing tables."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

import click

from analyzer.cli.output import STREAMING_FORMATS, emit_records, note, output_options
from analyzer.pcap.analyze import DEFAULT_PORTS, ENGINES, AnalyzeOptions, CaptureResult
from analyzer.pcap.batch import analyze_records
from analyzer.pcap.inputs import expand_paths, sort_by_capture_time
from analyzer.protocol.endpoints import OLLAMA_PORT
from analyzer.protocol.record import InteractionRecord
from analyzer.protocol.redact import REDACT_IMAGES, REDACTION_MODES
from analyzer.protocol.untrusted import for_terminal
from analyzer.resources.join import join_timeline
from analyzer.resources.timeline import timeline_path
from analyzer.store.log import LogError
from analyzer.store.tables import LISTING_COLUMNS, listing_rows, text_table

EXIT_BAD_INPUT = 1

_AFTER_TTFT = LISTING_COLUMNS.index("ttft_ms") + 1
TIMING_COLUMNS = (*LISTING_COLUMNS[:_AFTER_TTFT], "ttfb_ms", "gap_p95_ms", *LISTING_COLUMNS[_AFTER_TTFT:])


def timing_table(records: Sequence[InteractionRecord]) -> str:
    """The default view: one row per request with its timings."""
    if not records:
        return "no Ollama interactions found\n"
    rows = listing_rows(records)
    for row, record in zip(rows, records, strict=True):
        row["ttfb_ms"] = "" if record.ttfb_ms is None else f"{record.ttfb_ms:.1f}"
        row["gap_p95_ms"] = "" if record.gap_p95_ms is None else f"{record.gap_p95_ms:.1f}"
    return text_table(rows, TIMING_COLUMNS)


def _compact(value: object) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


BODY_INDENT = "  "


def _body(text: str) -> str:
    """A text block of ``--responses``: escaped for the terminal (newlines kept), every line indented, so no
    text from traffic can start a line with a block's ``===``/``---`` head (or drive the terminal)."""
    return "\n".join(BODY_INDENT + line for line in for_terminal(text, keep_newlines=True).split("\n"))


def responses_text(records: Sequence[InteractionRecord]) -> str:
    """Every interaction's reassembled texts, one block each (system, prompt, thinking, response, tool calls).

    Heads are ours and start at the margin; the texts (from traffic) are indented and escaped (``_body``).
    """
    blocks = []
    for r in records:
        head = f"=== {r.started_at} {r.method} {r.path} {r.model or '-'} {r.status or '-'}"
        if r.flags:
            head += " [" + ",".join(r.flags) + "]"
        parts = [for_terminal(head)]
        if r.system:
            parts.append(f"--- system\n{_body(r.system)}")
        if r.prompt:
            parts.append(f"--- prompt\n{_body(r.prompt)}")
        if r.thinking_text:
            parts.append(f"--- thinking\n{_body(r.thinking_text)}")
        parts.append(f"--- response\n{_body(r.response_text)}")
        if r.tool_calls:
            parts.append(f"--- tool_calls\n{_body(_compact(r.tool_calls))}")
        if r.error:
            parts.append(f"--- error\n{_body(r.error)}")
        blocks.append("\n".join(parts))
    return "\n\n".join(blocks) + "\n"


def _wants_progress(total: int) -> bool:
    return total > 1 and sys.stderr.isatty()


def _with_progress(results: Iterator[CaptureResult], total: int) -> Iterator[CaptureResult]:
    """A progress bar on stderr for runs over several files (only when stderr is a terminal)."""
    if not _wants_progress(total):
        yield from results
        return
    with click.progressbar(length=total, label="analyzing", file=sys.stderr) as bar:
        for result in results:
            bar.update(1)
            yield result


def _report(result: CaptureResult, ports: Sequence[int]) -> bool:
    """Warnings and errors of one file on stderr; True when the file could not be analyzed."""
    for warning in result.warnings:
        note(f"warning: {warning}")
    if result.error:
        note(f"error: {result.error}")
        return True
    if not result.stats.connections:
        # most often the wrong --port (Ollama behind a proxy, a non-default OLLAMA_HOST)
        listed = ", ".join(str(p) for p in ports)
        note(f"note: {result.path}: no TCP traffic on port(s) {listed}")
    if result.stats.stalled_connections:  # the HTTP parser's work bound tripped: a parser bug, never silent
        click.echo(
            f"warning: {result.path}: gave up on {result.stats.stalled_connections} connection(s) whose HTTP "
            "parsing stopped making progress (please report this file)",
            err=True,
        )
    skipped = []
    if result.stats.non_http_connections:
        skipped.append(f"{result.stats.non_http_connections} connection(s) on the port that were not Ollama HTTP")
    if result.non_ollama_requests:
        skipped.append(f"{result.non_ollama_requests} HTTP request(s) that were not Ollama API calls")
    if skipped:
        note(f"note: {result.path}: skipped " + " and ".join(skipped))
    return False


class _Tally:
    """Reports each file on stderr and counts those that could not be analyzed while their records pass."""

    def __init__(self, ports: Sequence[int]) -> None:
        self.ports = ports
        self.failed = 0

    def __call__(self, result: CaptureResult) -> None:
        self.failed += _report(result, self.ports)


def join_resources(result: CaptureResult) -> None:
    """Fill resource columns from ``NAME.resources.jsonl`` beside the capture (``ollama-capture run`` saves it)."""
    join_timeline(result.path, result.records, warn=lambda message: note(f"warning: {message}"))


def has_timeline(capture: Path) -> bool:
    return timeline_path(capture).exists()


@click.command(name="analyze-pcap")
@click.argument("paths", nargs=-1, required=True)
@click.option(
    "--port",
    "ports",
    type=click.IntRange(1, 65535),
    multiple=True,
    help=f"An Ollama server port (default {OLLAMA_PORT}); repeat for more.",
)
@click.option("--responses", is_flag=True, help="Print the reassembled prompts and responses instead of a table.")
@click.option(
    "--engine",
    type=click.Choice(ENGINES),
    default="auto",
    show_default=True,
    help="fast: built-in pcap/pcapng reader; tshark: Wireshark's dissectors (any link type, TLS); "
    "auto: fast, falling back to tshark.",
)
@click.option(
    "--jobs", type=click.IntRange(min=1), default=1, show_default=True, help="Analyze this many files in parallel."
)
@click.option(
    "--log-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Append the records to this interaction log (the addon's), skipping captures already analyzed.",
)
@click.option(
    "--tls-keylog",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="TLS key log (SSLKEYLOGFILE) to decrypt Ollama behind an HTTPS proxy (uses tshark).",
)
@click.option(
    "--tls-port",
    "tls_ports",
    type=click.IntRange(1, 65535),
    multiple=True,
    help="With --tls-keylog: the HTTPS port(s) in front of Ollama (default 443); repeat for more.",
)
@click.option(
    "--redact",
    type=click.Choice(REDACTION_MODES),
    default=REDACT_IMAGES,
    show_default=True,
    help="What to keep of prompts and responses (as the addon's ollama_redact).",
)
@output_options
def analyze_pcap(
    paths: tuple[str, ...],
    ports: tuple[int, ...],
    responses: bool,
    engine: str,
    jobs: int,
    log_dir: Path | None,
    tls_keylog: Path | None,
    tls_ports: tuple[int, ...],
    redact: str,
    fmt: str,
    output: Path | None,
    sqlite_path: Path | None,
) -> None:
    """Turn packet captures into Ollama interactions: reassembled responses and per-request timings.

    PATHS are capture files (pcap or pcapng, from tcpdump, dumpcap or Wireshark, Linux or macOS),
    directories of them, or globs; they are analyzed oldest capture first.

    \b
    analyze-pcap capture.pcap                 a timing table
    analyze-pcap capture.pcap --csv -o t.csv  every record column as CSV
    analyze-pcap capture.pcap --responses     the reassembled texts
    analyze-pcap ~/.local/share/ollama-wire/captures --log-dir logs/ollama_interactions --jobs 2

    Order: the table, --responses and --json list every request of the run by start time. --csv and
    --jsonl stream each request as its exchange completes, file after file (memory stays flat however
    large the captures); with --jobs, --log-dir or --sqlite, each file's requests by start time.

    A resource timeline saved beside a capture (NAME.resources.jsonl, written by ollama-capture run or
    ollama-wire resources --record) is joined by time: GPU, power, energy and server CPU/memory columns.

    Exit status: 0 when every file was read, 1 when some could not be (each gets a one-line error
    naming it; the others are still reported), 2 for bad arguments.
    """
    if responses and fmt != "table":
        raise click.UsageError(f"--responses prints text; drop --{fmt}")
    missing: list[str] = []

    def bad_input(message: str) -> None:
        note(f"error: {message}")
        missing.append(message)

    files = sort_by_capture_time(expand_paths(paths, on_error=bad_input))
    if not files:
        sys.exit(EXIT_BAD_INPUT)
    options = AnalyzeOptions(
        ports=tuple(dict.fromkeys(ports or DEFAULT_PORTS)),
        engine=engine,
        tls_keylog=tls_keylog,
        tls_ports=tuple(tls_ports) or (443,),
        redaction=redact,
    )
    watched = options.ports + (options.tls_ports if tls_keylog is not None else ())
    tally = _Tally(tuple(dict.fromkeys(watched)))
    if log_dir is not None:
        try:
            log_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise click.ClickException(f"{log_dir}: cannot write: {exc.strerror or exc}") from exc

    def note_skipped(count: int) -> None:
        if count:
            note(f"note: {count} capture(s) already in {log_dir}, skipped")

    records = analyze_records(
        files,
        options,
        jobs=jobs,
        log_dir=log_dir,
        # CSV and JSONL can take each record as its exchange completes (memory stays flat over many captures)
        completion_order=fmt in STREAMING_FORMATS and sqlite_path is None and not _wants_progress(len(files)),
        enrich=join_resources,
        held_whole=has_timeline,
        on_result=tally,
        on_skip=note_skipped,
        watch=lambda results: _with_progress(results, len(files)),
    )

    def render(rows: Sequence[InteractionRecord]) -> str:
        return responses_text(rows) if responses else timing_table(rows)

    try:
        emit_records(records, fmt, output, sqlite_path, table=render)
    except LogError as exc:
        raise click.ClickException(str(exc)) from exc
    if tally.failed or missing:
        sys.exit(EXIT_BAD_INPUT)
