"""``ollama-wire export``: send recorded interactions to an OpenTelemetry collector as GenAI spans."""

from __future__ import annotations

from datetime import datetime

import click

from analyzer.cli.options import moment_option
from analyzer.cli.output import note
from analyzer.export.replay import replay
from analyzer.export.settings import ExportConfigError, signal_endpoint
from analyzer.sources import SourceError, read_sources
from analyzer.store.log import DEFAULT_LOG_DIR


@click.command()
@click.option(
    "--otlp",
    "endpoint",
    required=True,
    metavar="URL",
    help="OTLP/HTTP base URL of the collector, e.g. http://127.0.0.1:4318 (spans go to URL/v1/traces).",
)
@click.option("--since", callback=moment_option, help="Only records from this time on (ISO time or 2h, 30m, 1d ago).")
@click.option("--model", "models", multiple=True, help="Only this model (repeatable).")
@click.option(
    "--content/--no-content",
    default=False,
    show_default=True,
    help="Put prompts and responses (as stored, i.e. redacted) on the spans as gen_ai.input/output.messages.",
)
@click.argument("sources", nargs=-1)
def export(
    endpoint: str, since: datetime | None, models: tuple[str, ...], content: bool, sources: tuple[str, ...]
) -> None:
    """Send records as OpenTelemetry GenAI spans, with their original timestamps.

    SOURCE is an interaction-log directory, a JSONL or CSV file this project wrote, or a packet capture
    (analyzed on the fly); default: the addon's log directory. Each span's trace and span id derive from the
    record id, so running the same export twice sends the same spans again (a backend keeps one copy).
    Metrics are not replayed: use the addon's live export for those. The OTEL_EXPORTER_OTLP_* variables
    (headers, timeout, certificates, compression) are honoured. Exits 1 if any span could not be delivered.
    """
    try:
        signal_endpoint(endpoint, "traces")
    except ExportConfigError as exc:
        raise click.BadParameter(str(exc), param_hint="--otlp") from None
    warnings: list[str] = []
    try:
        records = read_sources(list(sources) or [DEFAULT_LOG_DIR], since=since, models=models, warn=warnings.append)
    except SourceError as exc:
        raise click.ClickException(str(exc)) from None
    for warning in warnings:
        note(f"warning: {warning}")
    result = replay(records, endpoint, content=content)
    click.echo(f"{result.sent} of {result.records} spans sent to {endpoint}")
    if result.failed:
        raise click.ClickException(f"{result.failed} spans not delivered (collector down, slow or refusing?)")
