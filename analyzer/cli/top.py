"""``ollama-wire top``: a live terminal dashboard of Ollama traffic, fed by the addon."""

from __future__ import annotations

import shutil
from pathlib import Path

import click

from analyzer.cli.options import replays_option
from analyzer.live.paths import OFF, socket_path
from analyzer.protocol.endpoints import DEFAULT_OLLAMA_URL
from analyzer.store.log import DEFAULT_LOG_DIR


@click.command()
@click.option(
    "--live",
    "live",
    metavar="PATH",
    default="",
    help=f"The addon's live-feed socket (its ollama_live option); `{OFF}` for none. "
    "[default: the addon's default, see docs/live.md]",
)
@click.option(
    "--log-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=DEFAULT_LOG_DIR,
    show_default=True,
    help="The interaction log written by the addon: finished requests of the last hour, and everything "
    "when no live feed is there.",
)
@click.option(
    "--ollama",
    "ollama_url",
    metavar="URL",
    default=None,
    help="The Ollama server to ask for loaded models (/api/ps) and to find the server process by its port. "
    f"[default: $OLLAMA_HOST or {DEFAULT_OLLAMA_URL}]",
)
@click.option("--once", is_flag=True, help="Print one snapshot of the screen as text and exit (for scripts).")
@click.option("--width", type=click.IntRange(60, 400), default=None, help="Columns of the --once snapshot.")
@click.option(
    "--notify",
    is_flag=True,
    help="Desktop notification (notify-send / osascript, when present) on errors, stalls and aborts; "
    "at most one per 30 s.",
)
@click.option("--bell", is_flag=True, help="Ring the terminal bell on errors, stalls and aborts (at most every 30 s).")
@click.option(
    "--prices",
    "prices_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="A YAML prices file (kwh: USD per kWh; models: {NAME: {input, output}} in USD per million tokens), as "
    "for `logs --prices`: Recent and Per model show the energy and API-equivalent cost, the header the totals "
    "of the window. Default: 'prices' in the config file ($OLLAMA_WIRE_CONFIG or "
    "~/.config/ollama-wire/config.yaml), if set.",
)
@replays_option
def top(
    live: str,
    log_dir: Path,
    ollama_url: str | None,
    once: bool,
    width: int | None,
    notify: bool,
    bell: bool,
    prices_path: Path | None,
    include_replays: bool,
) -> None:
    """Watch Ollama traffic live: requests in flight (tokens, tok/s, pulls), recent ones, per-model latency,
    the models Ollama has loaded and the machine's memory, CPU and GPU (utilisation, memory, power where a GPU
    sampler works here); with prices, what each request cost.

    In flight comes from the addon's live feed (found by itself when mitmdump runs as the same user);
    without it, top shows the finished requests of the log directory and says so, and reconnects when the
    addon comes back. Keys: q quit, p pause, e errors only, w last 5 min / hour, / filter by model,
    enter details, ? help.
    """
    from analyzer.live.top.pollers import default_ollama_url
    from analyzer.resources.cost import PricesError, load_prices, prices_from_config

    try:
        prices = load_prices(prices_path) if prices_path is not None else prices_from_config()
    except PricesError as exc:
        raise click.ClickException(str(exc)) from exc
    path = socket_path(live)
    url = (ollama_url or default_ollama_url()).rstrip("/")
    if once:
        from analyzer.live.top.snapshot import gather, render

        columns = width or shutil.get_terminal_size((140, 40)).columns
        state = gather(path, log_dir, url, prices=prices, include_replays=include_replays)
        click.echo(render(state, width=columns), nl=False)
        return
    from analyzer.live.top.alerts import Alerts
    from analyzer.live.top.app import TopApp

    alerts = Alerts(notify=notify, bell=bell)
    if notify and alerts.command is None:
        click.echo("top: --notify: neither notify-send nor osascript found; notifications are off", err=True)
    TopApp(
        live_path=path, log_dir=log_dir, ollama_url=url, alerts=alerts, prices=prices, include_replays=include_replays
    ).run()
