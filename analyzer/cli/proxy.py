"""``ollama-wire proxy`` and ``ollama-wire addon-path``: the recording proxy from the installed package."""

from __future__ import annotations

import sys

import click

from analyzer.recorder.foreground import (
    DEFAULT_LISTEN,
    DEFAULT_UPSTREAM,
    ProxyPlan,
    is_loopback,
    parse_listen,
    parse_upstream,
)
from analyzer.recorder.process import ADDON_PATH, ProxyError


def _listen(_ctx: click.Context, _param: click.Parameter, value: str) -> tuple[str, int]:
    try:
        return parse_listen(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


def _upstream(_ctx: click.Context, _param: click.Parameter, value: str) -> str:
    try:
        return parse_upstream(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


@click.command("proxy", context_settings={"ignore_unknown_options": True})
@click.option(
    "--listen",
    default=DEFAULT_LISTEN,
    show_default=True,
    callback=_listen,
    metavar="HOST:PORT",
    help="Where clients connect ([::1]:PORT for IPv6). Point them at it: OLLAMA_HOST=HOST:PORT.",
)
@click.option(
    "--upstream",
    default=DEFAULT_UPSTREAM,
    show_default=True,
    callback=_upstream,
    metavar="URL",
    help="The Ollama server to forward to (HOST or HOST:PORT reads like OLLAMA_HOST).",
)
@click.argument("mitmdump_args", nargs=-1, type=click.UNPROCESSED, metavar="[MITMDUMP OPTIONS]...")
def proxy(listen: tuple[str, int], upstream: str, mitmdump_args: tuple[str, ...]) -> None:
    """Record every interaction: mitmdump in reverse mode with the ollama_log addon, until Ctrl-C.

    Runs `mitmdump --mode reverse:URL@HOST:PORT -s ADDON` with the addon of this installed package.
    Every other option goes to mitmdump, after this command's defaults (so it can override them),
    e.g. `--set ollama_log_dir=DIR`, `--set ollama_redact=none`, `--set flow_detail=1`
    (mitmdump's own line per flow, off by default). Ctrl-C stops it cleanly: open interactions are
    written before it exits.
    """
    host, port = listen
    if mitmdump_args[:1] == ("--",):  # `ollama-wire proxy -- --mode …`: everything after -- is mitmdump's
        mitmdump_args = mitmdump_args[1:]
    plan = ProxyPlan(host, port, upstream, mitmdump_args)

    def ready(mitmdump: str) -> None:
        click.echo(f"ollama-wire proxy: {plan.listen} -> {upstream} ({mitmdump} -s {ADDON_PATH})", err=True)
        if port == 0:
            click.echo("port 0: mitmdump picks one and prints it below ('listening at'); Ctrl-C stops", err=True)
        else:
            click.echo(f"point clients at it: OLLAMA_HOST={plan.listen}; Ctrl-C stops", err=True)
        if not is_loopback(host):
            click.echo(f"note: {host} is reachable beyond this machine; prompts pass through in clear", err=True)
        sys.stderr.flush()

    from analyzer.recorder.foreground import run_proxy

    try:
        status = run_proxy(plan, on_ready=ready)
    except ProxyError as exc:
        raise click.ClickException(str(exc)) from None
    if status not in (0, -2):  # -2: stopped by a SIGINT it did not catch
        raise click.ClickException(f"mitmdump exited with status {status} (its messages are above)")


@click.command("addon-path")
def addon_path() -> None:
    """Print the path of the mitmproxy script of this installed package.

    For your own mitmdump or mitmweb command line:
    `mitmdump --mode reverse:http://127.0.0.1:11434@127.0.0.1:11435 -s "$(ollama-wire addon-path)"`.
    """
    click.echo(str(ADDON_PATH))
