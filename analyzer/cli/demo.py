"""``ollama-wire demo``: a real mitmdump with the addon in front of Ollama (or the emulator), real clients."""

from __future__ import annotations

import contextlib
import json
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import click

from analyzer.emulator import EmulatorConfig, EmulatorThread
from analyzer.protocol.endpoints import OLLAMA_PORT
from analyzer.recorder.process import MitmdumpProcess, ProxyError
from analyzer.store.log import LogError, read_log
from analyzer.store.tables import LISTING_COLUMNS, listing_rows, summary_rows, text_table

REAL_OLLAMA = f"http://127.0.0.1:{OLLAMA_PORT}"


def real_ollama_models(url: str = REAL_OLLAMA) -> list[str] | None:
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
def upstream_server(use_emulator: bool, model: str | None) -> Iterator[tuple[str, str, str]]:
    """Yields (url, model, description): a real Ollama if one answers (and has a model), else the emulator."""
    if not use_emulator:
        models = real_ollama_models()
        if models:
            yield REAL_OLLAMA, model or models[0], f"real Ollama at {REAL_OLLAMA}"
            return
    with EmulatorThread(EmulatorConfig(prefill_ms=40.0, token_ms=8.0)) as emulator:
        yield emulator.url, model or emulator.config.models[0], f"built-in emulator at {emulator.url}"


def send_demo_traffic(proxy_url: str, model: str) -> list[str]:
    """Generate (stream), chat (stream) and an OpenAI-compatible stream with usage, through the proxy."""
    import ollama
    import openai

    seen: list[str] = []
    client = ollama.Client(host=proxy_url)
    text = "".join(
        part.response or "" for part in client.generate(model=model, prompt="Why is the sky blue?", stream=True)
    )
    seen.append(f"ollama generate  → {len(text)} chars: {text[:60]!r}…")
    text = "".join(
        part.message.content or ""
        for part in client.chat(model=model, messages=[{"role": "user", "content": "Name three colours."}], stream=True)
    )
    seen.append(f"ollama chat      → {len(text)} chars: {text[:60]!r}…")
    oa = openai.OpenAI(base_url=proxy_url + "/v1", api_key="ollama")
    chunks = oa.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": "Say hello."}],
        stream=True,
        stream_options={"include_usage": True},
    )
    text = "".join((c.choices[0].delta.content or "") for c in chunks if c.choices)
    seen.append(f"openai chat      → {len(text)} chars: {text[:60]!r}…")
    return seen


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


def write_demo_report(log_dir: Path, target: Path) -> None:
    """The HTML report of everything in the demo's log, and where it went."""
    from analyzer.cli.report import write_private
    from analyzer.report import analyze
    from analyzer.report.page import render_page

    try:
        analysis = analyze(read_log(log_dir))
    except LogError as exc:
        raise click.ClickException(str(exc)) from exc
    write_private(target, render_page(analysis, sources=[str(log_dir)]))
    codes = ", ".join(f.code for f in analysis.findings) or "none"
    click.echo(
        f"report:   {target} ({analysis.headline['requests']} requests; findings: {codes}) — open it in a browser"
    )


@click.command()
@click.option(
    "--log-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("logs/demo"),
    show_default=True,
    help="Where the addon writes the demo's interaction log.",
)
@click.option("--emulator", "use_emulator", is_flag=True, help="Use the built-in emulator even if Ollama runs.")
@click.option("--model", help="Model to ask (default: the first one the server has).")
@click.option(
    "--report",
    "report_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Where to write the HTML report of the demo's log (default: LOG_DIR/report.html).",
)
@click.option("--no-report", is_flag=True, help="Do not write the HTML report.")
def demo(log_dir: Path, use_emulator: bool, model: str | None, report_path: Path | None, no_report: bool) -> None:
    """Record live traffic end to end: mitmdump + the addon in front of Ollama, official clients.

    Uses a real Ollama at 127.0.0.1:11434 when one answers, else the built-in emulator;
    sends a generate, a chat and an OpenAI-compatible stream through a real mitmdump reverse proxy
    with the ollama_log addon (as `ollama-wire proxy` runs it), prints what was recorded, and writes the
    HTML report of the log (`ollama-wire report`; open it in a browser).
    """
    before = prepare_log_dir(log_dir)
    with upstream_server(use_emulator, model) as (upstream, chosen_model, description):
        click.echo(f"upstream: {description} (model {chosen_model})")
        try:
            proxy = MitmdumpProcess(upstream, options={"ollama_log_dir": str(log_dir)}).start()
        except ProxyError as exc:
            raise click.ClickException(str(exc)) from exc
        try:
            click.echo(f"proxy:    mitmdump with the ollama_log addon listening on {proxy.url}")
            sent = send_demo_traffic(proxy.url, chosen_model)
            for line in sent:
                click.echo("client:   " + line)
            wait_for_records(log_dir, before + len(sent))
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
    if not no_report:
        write_demo_report(log_dir, report_path or log_dir / "report.html")
    if len(records) < len(sent):
        # the addon did not record everything; it says why in mitmdump's console log
        raise click.ClickException(
            f"{log_dir}: only {len(records)} of {len(sent)} requests were recorded "
            f"(see mitmdump's console log {proxy.console_path})"
        )
