"""``ollama-wire demo``: a staged night through a real mitmdump with the addon, official clients, then the findings."""

from __future__ import annotations

import contextlib
import json
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import click

from analyzer.emulator import EmulatorThread
from analyzer.emulator.night import NIGHT_CONFIG, NIGHT_MODEL, Step, run_night
from analyzer.protocol.endpoints import DEFAULT_OLLAMA_URL
from analyzer.protocol.record import InteractionRecord
from analyzer.recorder.process import MitmdumpProcess, ProxyError
from analyzer.store.log import LogError, read_log
from analyzer.store.tables import LISTING_COLUMNS, listing_rows, summary_rows, text_table


def real_ollama_models(url: str) -> list[str] | None:
    """The models of a real Ollama answering at ``url``, or None when nothing answers there."""
    try:
        with urllib.request.urlopen(url + "/", timeout=0.5) as reply:
            if b"Ollama is running" not in reply.read(64):
                return None
        with urllib.request.urlopen(url + "/api/tags", timeout=2) as reply:
            tags = json.loads(reply.read())
    except (OSError, ValueError):
        return None
    return [m["name"] for m in tags.get("models", []) if isinstance(m, dict) and "name" in m]


@contextlib.contextmanager
def upstream_server(ollama_url: str | None, model: str | None) -> Iterator[tuple[str, str, str]]:
    """Yields (url, model, description): the real Ollama at ``ollama_url``, else the emulator staging the night."""
    if ollama_url is not None:
        url = ollama_url.rstrip("/")
        models = real_ollama_models(url)
        if models is None:
            raise click.ClickException(f"{url}: no Ollama answers there (is `ollama serve` running?)")
        if not model and not models:
            raise click.ClickException(f"{url}: the server has no models (create one, or pass --model)")
        yield url, model or models[0], f"real Ollama at {url}"
        return
    with EmulatorThread(NIGHT_CONFIG) as emulator:
        yield (
            emulator.url,
            model or NIGHT_MODEL,
            f"built-in emulator at {emulator.url}, staging a short night on a busy server:\n"
            f"          a model load takes {NIGHT_CONFIG.load_ms / 1000:.1f} s, one request at a time per model "
            "(OLLAMA_NUM_PARALLEL=1)",
        )


def wait_for_records(log_dir: Path, count: int, timeout_s: float = 10.0) -> None:
    """Give the addon up to ``timeout_s`` to write ``count`` records in all (it appends after each response)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and len(read_log(log_dir)) < count:
        time.sleep(0.05)


def prepare_log_dir(log_dir: Path) -> int:
    """Create ``log_dir`` if needed and return how many records it holds (one-line error if it cannot be used)."""
    try:
        log_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise click.ClickException(f"{log_dir}: cannot create the log directory: {exc.strerror or exc}") from exc
    try:
        return len(read_log(log_dir))
    except LogError as exc:
        raise click.ClickException(str(exc)) from exc


def write_demo_report(records: list[InteractionRecord], log_dir: Path, target: Path | None) -> None:
    """The findings of this run's records in the terminal, then (unless ``target`` is None) the HTML report."""
    from analyzer.cli.report import write_private
    from analyzer.report import analyze
    from analyzer.report.page import render_page
    from analyzer.report.terminal import render_findings

    analysis = analyze(records)
    click.echo(f"findings (also: ollama-wire findings {log_dir}, which reads every run in the log):\n")
    click.echo(render_findings(analysis))
    if target is None:
        return
    write_private(target, render_page(analysis, sources=[str(log_dir)]))
    codes = ", ".join(f.code for f in analysis.findings) or "none"
    click.echo(f"report:   {target} ({len(records)} requests; findings: {codes}) — open it in a browser")


@click.command()
@click.option(
    "--log-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("logs/demo"),
    show_default=True,
    help="Where the addon writes the demo's interaction log.",
)
@click.option(
    "--ollama",
    "ollama_url",
    metavar="URL",
    help=f"Record the same client session against the real Ollama at URL (e.g. {DEFAULT_OLLAMA_URL}) instead of the "
    "emulator's staged night.",
)
@click.option("--model", help=f"Model to ask (default: {NIGHT_MODEL} on the emulator, else the server's first).")
@click.option(
    "--report",
    "report_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Where to write the HTML report of this run (default: LOG_DIR/report.html).",
)
@click.option("--no-report", is_flag=True, help="Do not write the HTML report.")
def demo(log_dir: Path, ollama_url: str | None, model: str | None, report_path: Path | None, no_report: bool) -> None:
    """Show what ollama-wire finds: a short night with problems, recorded through the real proxy.

    By default the built-in emulator plays a busy server (a model load takes 1.5 s, one request at a
    time per model) and the official ollama and openai clients send a night's traffic through a real
    mitmdump with the ollama_log addon (as `ollama-wire proxy` runs it): the first request waits for
    the model to load, a burst of chats to one model queues, a long log pasted into a small num_ctx is
    truncated, and a request names a model the server does not have. The demo prints what was
    recorded, then the findings that name each problem, and writes the HTML report (open it in a
    browser). With --ollama URL the same session goes to a real Ollama instead.
    """
    before = prepare_log_dir(log_dir)
    sent = 0
    with upstream_server(ollama_url, model) as (upstream, chosen_model, description):
        click.echo(f"upstream: {description}")
        try:
            proxy = MitmdumpProcess(upstream, options={"ollama_log_dir": str(log_dir)}).start()
        except ProxyError as exc:
            raise click.ClickException(str(exc)) from exc
        try:
            click.echo(f"proxy:    mitmdump with the ollama_log addon listening on {proxy.url}")
            click.echo(f"clients:  the official ollama and openai clients, model {chosen_model}, through the proxy")

            def show(step: Step) -> None:
                click.echo(f"  {step.what:<48} → {step.outcome}")

            sent = sum(step.requests for step in run_night(proxy.url, chosen_model, on_step=show))
            wait_for_records(log_dir, before + sent)
        except LogError as exc:
            raise click.ClickException(str(exc)) from exc
        except Exception as exc:  # a client error: show it on one line, still shut down cleanly
            raise click.ClickException(f"demo traffic failed: {exc}") from exc
        finally:
            proxy.stop()
    try:
        records = read_log(log_dir)[before:]
    except LogError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"\nrecorded {len(records)} interactions in {log_dir}/ (see: ollama-wire logs --log-dir {log_dir})\n")
    click.echo(text_table(listing_rows(records), LISTING_COLUMNS))
    click.echo(text_table(summary_rows(records)))
    write_demo_report(records, log_dir, None if no_report else report_path or log_dir / "report.html")
    if len(records) < sent:
        # the addon did not record everything; it says why in mitmdump's console log
        raise click.ClickException(
            f"{log_dir}: only {len(records)} of {sent} requests were recorded "
            f"(see mitmdump's console log {proxy.console_path})"
        )
