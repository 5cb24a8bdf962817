"""The ``ollama-wire top`` Textual app: panels fed by workers through messages, redrawn twice a second."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path
from typing import Any, ClassVar

from rich.text import Text
from textual import on, work
from textual.app import App, ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal
from textual.message import Message
from textual.widgets import DataTable, Footer, Input
from textual.worker import get_current_worker

from analyzer.live.subscriber import read_event_batches
from analyzer.live.top import rows
from analyzer.live.top.alerts import Alerts
from analyzer.live.top.pollers import GpuReader, MachineSampler, ask_ollama
from analyzer.live.top.state import GpuStatus, MachineStatus, OllamaStatus, TopState, is_error
from analyzer.live.top.widgets import (
    RECENT_SHOWN,
    DetailsScreen,
    HelpScreen,
    InFlightTable,
    LinesPanel,
    ModelTable,
    RecentTable,
)
from analyzer.protocol.record import FLAG_CLIENT_ABORTED, InteractionRecord
from analyzer.resources.cost import Prices
from analyzer.store.tail import LogFollower

REDRAW_S = 0.5
MODELS_REDRAW_S = 5.0
RECONNECT_S = 1.0
LOG_POLL_S = 1.0
OLLAMA_POLL_S = 2.0
MACHINE_POLL_S = 2.0


class FeedEvents(Message):
    """Events as one read of the feed returned them."""

    def __init__(self, batch: list[dict[str, Any]]) -> None:
        super().__init__()
        self.batch = batch


class FeedDown(Message):
    def __init__(self, problem: str) -> None:
        super().__init__()
        self.problem = problem


class LogRecords(Message):
    def __init__(self, records: list[InteractionRecord], problem: str) -> None:
        super().__init__()
        self.records = records
        self.problem = problem


class OllamaUpdate(Message):
    def __init__(self, status: OllamaStatus) -> None:
        super().__init__()
        self.status = status


class MachineUpdate(Message):
    def __init__(self, status: MachineStatus) -> None:
        super().__init__()
        self.status = status


class GpuUpdate(Message):
    def __init__(self, status: GpuStatus) -> None:
        super().__init__()
        self.status = status


class TopApp(App[None]):
    """In flight, Recent, Per model, Ollama, Machine; keys in the footer."""

    CSS_PATH = "top.tcss"
    TITLE = "ollama-wire top"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("q", "quit", "Quit"),
        Binding("p", "pause", "Pause"),
        Binding("e", "errors_only", "Errors only"),
        Binding("w", "window", "5 min/1 h"),
        Binding("slash", "filter", "Filter model", key_display="/"),
        Binding("enter", "details", "Details", priority=False),
        Binding("question_mark", "help", "Help", key_display="?"),
    ]

    def __init__(
        self,
        *,
        live_path: Path | None,
        log_dir: Path,
        ollama_url: str,
        alerts: Alerts | None = None,
        poll_machine: bool = True,
        prices: Prices | None = None,
        gpu: GpuReader | None = None,
        include_replays: bool = False,
    ) -> None:
        super().__init__()
        self.include_replays = include_replays
        self.live_path = live_path
        self.log_dir = log_dir
        self.ollama_url = ollama_url
        self.alerts = alerts or Alerts(notify=False, bell=False)
        self.poll_machine = poll_machine
        self.state = TopState(str(live_path or "off"), str(log_dir), ollama_url)
        self.state.prices = prices
        self.gpu = gpu or GpuReader(interval_ms=int(MACHINE_POLL_S * 1000))
        if live_path is None:
            self.state.feed_problem = "live feed turned off (--live off)"
        self._stall_alerted: set[str] = set()
        self._stopping = threading.Event()  # thread workers sleep on it, so quitting does not wait for them
        self.window = 0  # index into rows.WINDOWS for the Per model panel
        self._recent_key: tuple[object, ...] = ()
        self._models_at = 0.0

    # -- layout -------------------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        yield LinesPanel(id="title")
        yield InFlightTable(id="inflight")
        yield RecentTable(prices=self.state.prices, id="recent")
        cost = "with-cost" if self.state.prices is not None else ""
        with Horizontal(id="bottom", classes=cost):
            yield ModelTable(with_cost=self.state.prices is not None, id="models", classes=cost)
            yield LinesPanel(id="ollama")
            yield LinesPanel(id="machine")
        yield Input(placeholder="model name contains… (enter applies, empty clears, esc cancels)", id="filter")
        yield Footer()

    def on_mount(self) -> None:
        titles = {
            "#inflight": "In flight",
            "#recent": "Recent",
            "#ollama": "Ollama",
            "#machine": "Machine",
        }
        for selector, title in titles.items():
            self.query_one(selector).border_title = title
        self.query_one("#filter", Input).display = False
        self.redraw()
        self.set_interval(REDRAW_S, self.tick)
        if self.live_path is not None:
            self.follow_feed()
        self.follow_log()
        self.follow_ollama()
        if self.poll_machine:
            self.follow_machine()
            self.follow_gpu()

    # -- workers ------------------------------------------------------------------------------
    @work(exclusive=True, group="feed")
    async def follow_feed(self) -> None:
        """Read the live feed; when it goes away, say so and try again every second (the addon may restart)."""
        assert self.live_path is not None
        while True:
            try:
                async for batch in read_event_batches(self.live_path):
                    self.post_message(FeedEvents(batch))
                problem = "the addon closed its live feed"
            except FileNotFoundError:
                problem = f"no live feed at {self.live_path} (is mitmdump with the addon running?)"
            except (OSError, ValueError) as exc:
                problem = f"live feed {self.live_path}: {exc}"
            self.post_message(FeedDown(problem))
            await asyncio.sleep(RECONNECT_S)

    @work(thread=True, group="log")
    def follow_log(self) -> None:
        tail = LogFollower(self.log_dir, include_replays=self.include_replays)
        worker = get_current_worker()
        while not worker.is_cancelled:
            records = tail.poll()
            self.post_message(LogRecords(records, tail.problem))
            if self._stopping.wait(LOG_POLL_S):
                return

    @work(thread=True, group="ollama")
    def follow_ollama(self) -> None:
        worker = get_current_worker()
        while not worker.is_cancelled:
            self.post_message(OllamaUpdate(ask_ollama(self.ollama_url)))
            if self._stopping.wait(OLLAMA_POLL_S):
                return

    @work(thread=True, group="machine")
    def follow_machine(self) -> None:
        sampler = MachineSampler(self.ollama_url)
        worker = get_current_worker()
        while not worker.is_cancelled:
            self.post_message(MachineUpdate(sampler.sample()))
            if self._stopping.wait(MACHINE_POLL_S):
                return

    @work(thread=True, group="gpu")
    def follow_gpu(self) -> None:
        """The GPU resource samplers, opened and read here (NVML/macmon may block): one reading every 2 s."""
        worker = get_current_worker()
        status = self.gpu.open()
        try:
            self.post_message(GpuUpdate(status))
            while status.available and not worker.is_cancelled:
                self.post_message(GpuUpdate(self.gpu.read()))
                if self._stopping.wait(MACHINE_POLL_S):
                    return
        finally:
            self.gpu.close()

    # -- messages -----------------------------------------------------------------------------
    def on_feed_events(self, message: FeedEvents) -> None:
        was_live = self.state.live
        for event in message.batch:
            record = self.state.apply_event(event)
            if record is not None:
                self._alert_for(record)
        if not was_live and self.state.live:
            self.state.feed_problem = ""

    def on_feed_down(self, message: FeedDown) -> None:
        self.state.feed_lost(message.problem)

    def on_log_records(self, message: LogRecords) -> None:
        self.state.log_problem = message.problem
        for record in message.records:
            self.state.add_finished(record)

    def on_ollama_update(self, message: OllamaUpdate) -> None:
        self.state.ollama = message.status

    def on_machine_update(self, message: MachineUpdate) -> None:
        self.state.machine = message.status

    def on_gpu_update(self, message: GpuUpdate) -> None:
        self.state.gpu = message.status

    # -- alerts -------------------------------------------------------------------------------
    def _alert_for(self, record: InteractionRecord) -> None:
        if FLAG_CLIENT_ABORTED in (record.flags or []):
            self.alerts.add(f"aborted: {record.model or '-'} {record.path}")
        elif is_error(record):
            self.alerts.add(f"error: {record.model or '-'} {record.path}: {record.error or record.status}")

    def _check_alerts(self, now: float) -> None:
        if not self.alerts.enabled:
            return
        for running in self.state.stalled(now):
            if running.id not in self._stall_alerted:
                self._stall_alerted.add(running.id)
                self.alerts.add(f"stalled: {running.model or '-'} {running.start.get('path', '')}")
        self._stall_alerted &= set(self.state.view.running)
        taken = self.alerts.take(now)
        if taken is None:
            return
        if self.alerts.bell:
            self.bell()
        if self.alerts.command is not None:
            self.run_worker(lambda: self.alerts.send(*taken), thread=True, group="notify")

    # -- drawing ------------------------------------------------------------------------------
    def tick(self) -> None:
        now = time.time()
        self._check_alerts(now)
        if not self.state.paused:
            self.redraw(now)

    def redraw(self, now: float | None = None) -> None:
        now = now or time.time()
        state = self.state
        self.query_one(InFlightTable).show(state.running(), now)
        # Recent changes only with new records or filters; Per model also with time (its window): redraw those
        # on change, and Per model at least every few seconds, instead of on every tick.
        key = (state.finished_count, state.errors_only, state.model_filter, self.window)
        if key != self._recent_key:
            recent = self.query_one(RecentTable)
            recent.show(state.finished(RECENT_SHOWN))
            recent.border_title = "Recent — errors only" if state.errors_only else "Recent"
        if key != self._recent_key or now - self._models_at >= MODELS_REDRAW_S:
            self.query_one(ModelTable).show(state, now, self.window)
            self._models_at = now
        self._recent_key = key
        self.query_one("#title", LinesPanel).show([Text(rows.header_text(state))])
        self.query_one("#ollama", LinesPanel).show(rows.ollama_lines(state.ollama, now))
        self.query_one("#machine", LinesPanel).show(rows.machine_lines(state.machine, state.gpu))

    def on_unmount(self) -> None:
        self._stopping.set()

    async def action_quit(self) -> None:
        self._stopping.set()
        self.exit()

    # -- keys ---------------------------------------------------------------------------------
    def action_pause(self) -> None:
        self.state.paused = not self.state.paused
        self.query_one("#title", LinesPanel).show([Text(rows.header_text(self.state))])
        if not self.state.paused:
            self.redraw()

    def action_errors_only(self) -> None:
        self.state.errors_only = not self.state.errors_only
        self.redraw()

    def action_window(self) -> None:
        self.window = (self.window + 1) % len(rows.WINDOWS)
        self.redraw()

    def action_filter(self) -> None:
        field = self.query_one("#filter", Input)
        field.value = self.state.model_filter
        field.display = True
        field.focus()

    @on(Input.Submitted, "#filter")
    def apply_filter(self, event: Input.Submitted) -> None:
        self.state.model_filter = event.value.strip()
        event.input.display = False
        self.query_one(InFlightTable).focus()
        self.redraw()

    def on_key(self, event: Any) -> None:
        field = self.query_one("#filter", Input)
        if event.key == "escape" and field.display:
            field.display = False
            self.query_one(InFlightTable).focus()
            event.stop()

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        """Enter on a row of In flight or Recent (the table's own enter key)."""
        if isinstance(event.data_table, InFlightTable | RecentTable) and event.row_key.value:
            self.push_screen(DetailsScreen(self.state, event.row_key.value))

    def action_details(self) -> None:
        focused = self.focused
        tables = [self.query_one(InFlightTable), self.query_one(RecentTable)]
        table = focused if focused in tables else next((t for t in tables if t.row_count), None)
        key = table.selected_key() if table is not None else None  # type: ignore[union-attr]
        if key:
            self.push_screen(DetailsScreen(self.state, key))

    def action_help(self) -> None:
        self.push_screen(HelpScreen())
