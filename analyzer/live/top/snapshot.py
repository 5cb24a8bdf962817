"""``ollama-wire top --once``: gather everything once (briefly attaching to the feed) and print it as text."""

from __future__ import annotations

import asyncio
import io
import time
from pathlib import Path

from rich import box
from rich.console import Console, Group, RenderableType
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from analyzer.live.subscriber import read_events
from analyzer.live.top import rows
from analyzer.live.top.pollers import GpuReader, MachineSampler, ask_ollama
from analyzer.live.top.state import TopState
from analyzer.resources.cost import Prices
from analyzer.store.tail import LogFollower

ATTACH_S = 0.4  # how long to listen to the feed: hello and the in-flight state arrive at once, then progress
RECENT_LINES = 10
MAX_CELL = 24  # widest a snapshot column (but the last) gets before it is cut


async def _read_feed(state: TopState, path: Path, listen_s: float) -> None:
    async def consume() -> None:
        async for event in read_events(path):
            state.apply_event(event)

    try:
        await asyncio.wait_for(consume(), timeout=listen_s)
        state.feed_lost("the addon closed its live feed")
    except TimeoutError:
        pass
    except FileNotFoundError:
        state.feed_lost(f"no live feed at {path} (is mitmdump with the addon running?)")
    except OSError as exc:
        state.feed_lost(f"live feed {path}: {exc}")


def gather(
    live_path: Path | None,
    log_dir: Path,
    ollama_url: str,
    listen_s: float = ATTACH_S,
    prices: Prices | None = None,
    gpu: GpuReader | None = None,
    include_replays: bool = False,
) -> TopState:
    """One reading of every source."""
    state = TopState(str(live_path or "off"), str(log_dir), ollama_url)
    state.prices = prices
    for record in LogFollower(log_dir, include_replays=include_replays).poll():
        state.add_finished(record)
    if live_path is None:
        state.feed_problem = "live feed turned off (--live off)"
    else:
        asyncio.run(_read_feed(state, live_path, listen_s))
    sampler = MachineSampler(ollama_url)
    sampler.sample()  # primes CPU percentages
    state.ollama = ask_ollama(ollama_url)
    gpu = gpu or GpuReader()
    try:
        state.gpu = gpu.open()
        time.sleep(0.2)
        if state.gpu.available:
            state.gpu = gpu.read()
    finally:
        gpu.close()
    state.machine = sampler.sample()
    return state


def _table(title: str, columns: tuple[str, ...], body: list[tuple], empty: str) -> RenderableType:
    if not body:
        return Text.assemble((title, "bold"), "\n  ", (empty, "dim"), "\n")
    table = Table(title=title, title_justify="left", title_style="bold", box=box.SIMPLE_HEAD, expand=True)
    for index, column in enumerate(columns):
        if index == len(columns) - 1:  # the last column (prompt, flags) takes what is left, cut with an ellipsis
            table.add_column(column, overflow="ellipsis", no_wrap=True, ratio=1)
            continue
        widest = max([len(column), *(Text(str(cells[index])).cell_len for cells in body)])
        table.add_column(column, overflow="ellipsis", no_wrap=True, min_width=min(widest, MAX_CELL))
    for cells in body:  # plain strings would be parsed as Rich markup: every cell goes in as Text
        table.add_row(*(cell if isinstance(cell, Text) else Text(str(cell)) for cell in cells))
    return table


def render(state: TopState, width: int = 140, now: float | None = None) -> str:
    """The snapshot as plain text (no colours), ``width`` columns wide."""
    now = now or time.time()
    in_flight = [rows.in_flight_row(r, now) for r in state.running()]
    with_cost = state.prices is not None
    recent = [rows.recent_row(r, state.prices) for r in state.finished(RECENT_LINES)]
    per_model = [
        (label, *rows.model_row(stats, with_cost))
        for label, window in rows.WINDOWS
        for stats in state.per_model(window, now)
    ]
    costs = " · ".join(f"cost last {label}: {rows.cost_totals(state, window, now)}" for label, window in rows.WINDOWS)
    empty_flight = "nothing running" if state.live else "unknown without the live feed"
    parts: list[RenderableType] = [
        Text(rows.header_text(state, costs if with_cost else ""), style="bold"),
        _table("In flight", rows.IN_FLIGHT_COLUMNS, in_flight, empty_flight),
        _table("Recent", rows.recent_columns(with_cost), recent, "no finished request in the last hour"),
        _table("Per model", ("Window", *rows.model_columns(with_cost)), per_model, "no request in the last hour"),
        Panel(Text("\n").join(rows.ollama_lines(state.ollama, now)), title="Ollama", title_align="left"),
        Panel(Text("\n").join(rows.machine_lines(state.machine, state.gpu)), title="Machine", title_align="left"),
    ]
    out = io.StringIO()
    console = Console(file=out, width=width, color_system=None, force_terminal=False, legacy_windows=False)
    console.print(Group(*parts))
    return out.getvalue()
