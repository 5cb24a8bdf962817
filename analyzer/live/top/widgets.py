"""The dashboard's panels: each owns one box of the screen and draws what ``TopState`` holds."""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from typing import Any, ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import DataTable, Static
from textual.widgets.data_table import ColumnKey

from analyzer.live.subscriber import Running
from analyzer.live.top import rows
from analyzer.live.top.state import TopState
from analyzer.protocol.record import InteractionRecord
from analyzer.protocol.untrusted import clip, for_terminal
from analyzer.resources.cost import Prices, cost_columns

RECENT_SHOWN = 200
DETAIL_TEXT = 20_000  # characters of a prompt/response the details screen shows


def _text(cell: Any) -> Text:
    return cell if isinstance(cell, Text) else Text(str(cell), no_wrap=True, overflow="ellipsis")


class SyncedTable(DataTable):
    """A DataTable updated by key: cells change in place, rows are rebuilt only when the order changes."""

    COLUMNS: Sequence[str] = ()

    def on_mount(self) -> None:
        self.cursor_type = "row"
        self.zebra_stripes = True
        for label in self.COLUMNS:
            self.add_column(label, key=label)

    def sync(self, keyed_rows: Iterable[tuple[str, tuple[Any, ...]]]) -> None:
        # Cells go in as Text: a plain str would be parsed as markup on every measure and render.
        wanted = [(key, tuple(_text(cell) for cell in cells)) for key, cells in keyed_rows]
        keys = [key for key, _ in wanted]
        current = [row_key.value for row_key in self.rows]
        if keys == current:
            for key, cells in wanted:
                for label, value in zip(self.COLUMNS, cells, strict=True):
                    if self.get_cell(key, label) != value:
                        # Re-measuring a column costs more than the update: only when the cell outgrows it.
                        wider = value.cell_len > self.columns[ColumnKey(label)].content_width
                        self.update_cell(key, label, value, update_width=wider)
            return
        selected = self.selected_key()
        self.clear()
        for key, cells in wanted:
            self.add_row(*cells, key=key)
        if selected in keys:
            self.move_cursor(row=keys.index(selected), scroll=False)

    def selected_key(self) -> str | None:
        if not self.row_count:
            return None
        try:
            return self.coordinate_to_cell_key(self.cursor_coordinate).row_key.value
        except Exception:  # cursor outside the table after a rebuild
            return None


class InFlightTable(SyncedTable):
    COLUMNS = rows.IN_FLIGHT_COLUMNS
    BINDINGS: ClassVar[list[BindingType]] = [Binding("enter", "select_cursor", "Details")]

    def show(self, running: list[Running], now: float) -> None:
        self.sync((r.id, rows.in_flight_row(r, now)) for r in running)


class RecentTable(SyncedTable):
    COLUMNS: Sequence[str] = rows.RECENT_COLUMNS
    BINDINGS: ClassVar[list[BindingType]] = [Binding("enter", "select_cursor", "Details")]

    def __init__(self, *, prices: Prices | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.prices = prices
        self.COLUMNS = rows.recent_columns(prices is not None)  # the cost columns only with prices

    def show(self, records: list[InteractionRecord]) -> None:
        self.sync((r.id, rows.recent_row(r, self.prices)) for r in records)


class ModelTable(SyncedTable):
    COLUMNS: Sequence[str] = rows.MODEL_COLUMNS

    def __init__(self, *, with_cost: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.with_cost = with_cost
        self.COLUMNS = rows.model_columns(with_cost)

    def show(self, state: TopState, now: float, window: int) -> None:
        label, seconds = rows.WINDOWS[window]
        other = rows.WINDOWS[(window + 1) % len(rows.WINDOWS)][0]
        self.border_title = f"Per model — last {label}"
        if self.with_cost:  # the window's totals (model filter applied)
            self.border_title += " — " + rows.cost_totals(state, seconds, now)
        self.border_subtitle = f"w: last {other}"
        self.sync((stats.key, rows.model_row(stats, self.with_cost)) for stats in state.per_model(seconds, now))


class LinesPanel(Static):
    """A box of text lines (the Ollama and Machine panels, the title line); redrawn only when they change."""

    _shown: Text | None = None

    def show(self, lines: list[Text]) -> None:
        text = Text("\n").join(lines)
        if self._shown is None or text != self._shown:  # Static.update re-lays out the screen: skip no-ops
            self._shown = text
            self.update(text)


class HelpScreen(ModalScreen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape,q,question_mark", "dismiss", "Close")]
    KEYS = (
        ("q", "quit"),
        ("p", "pause / resume the screen (data keeps coming)"),
        ("e", "errors only in Recent"),
        ("w", "Per model: last 5 minutes / last hour"),
        ("/", "filter by model (substring; empty clears)"),
        ("enter", "details of the selected request"),
        ("tab", "next panel"),
        ("?", "this help"),
    )

    def compose(self) -> ComposeResult:
        text = Text("Keys\n\n", style="bold")
        for key, what in self.KEYS:
            text.append(f"  {key:<7}", style="bold cyan")
            text.append(f"{what}\n")
        note = "\nIn flight comes from the addon's live feed; Recent and Per model also from the log."
        text.append(note, style="dim")
        yield Static(text, id="help-body")


class DetailsScreen(ModalScreen[None]):
    """One request: prompt, response so far, every timing; refreshed while it runs."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape,q,enter", "dismiss", "Close")]

    def __init__(self, state: TopState, key: str) -> None:
        super().__init__()
        self.state = state
        self.key = key

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="details-box"):
            yield Static(id="details-body")

    def on_mount(self) -> None:
        self.query_one("#details-box").border_title = "Request details (esc closes)"
        self.refresh_details()
        self.set_interval(0.5, self.refresh_details)

    def refresh_details(self) -> None:
        self.query_one("#details-body", Static).update(details_text(self.state, self.key, time.time()))


def _pairs(text: Text, pairs: Iterable[tuple[str, Any]]) -> None:
    for name, value in pairs:
        if value is None or value == "":
            continue
        text.append(f"{name:>18}  ", style="bold")
        text.append(rows.data(value, width=1000))
        text.append("\n")


def _block(value: str) -> str:
    """A prompt or response from traffic for the details screen: newlines kept, other controls escaped, cut."""
    return clip(for_terminal(value[: DETAIL_TEXT + 1], keep_newlines=True), DETAIL_TEXT)


def _number(value: float | None, unit: str, digits: int = 1) -> str | None:
    return None if value is None else f"{value:.{digits}f} {unit}"


def _sourced(value: str | None, source: str | None) -> str | None:
    """A value with where it came from (``12.0 J (nvml_counter)``); None when the value is unknown."""
    return None if value is None else (f"{value} ({source})" if source else value)


def _resource_pairs(record: InteractionRecord) -> list[tuple[str, Any]]:
    """The resource columns the addon attributed to this request (absent when it sampled nothing), energy and GPU
    memory labelled by their source."""
    return [
        ("GPU util (mean)", _number(record.gpu_util_mean_pct, "%", 0)),
        ("GPU memory (max)", _sourced(_number(record.gpu_mem_max_mb, "MB", 0), record.gpu_mem_source)),
        ("power (mean)", _number(record.power_mean_w, "W")),
        ("energy", _sourced(_number(record.energy_j, "J"), record.energy_source)),
        ("joules/token", _number(record.joules_per_token, "J", 3)),
        ("server CPU", rows.ms(record.server_cpu_ms) if record.server_cpu_ms is not None else None),
        ("server RSS (max)", _number(record.server_rss_max_mb, "MB", 0)),
    ]


def _cost_pairs(state: TopState, record: InteractionRecord) -> list[tuple[str, Any]]:
    if state.prices is None:
        return []
    cost = cost_columns(record, state.prices)
    return [("cost energy", rows.usd(cost["cost_energy_usd"])), ("cost API", rows.usd(cost["cost_api_usd"]))]


def details_text(state: TopState, key: str, now: float) -> Text:
    """The details of a running (from the feed) or finished (record) request."""
    text = Text()
    running = state.view.running.get(key)
    if running is not None:
        start, progress = running.start, running.progress
        text.append("RUNNING\n", style="bold yellow")
        _pairs(
            text,
            [
                ("request", f"{start.get('method')} {start.get('path')}"),
                ("model", start.get("model")),
                ("client", start.get("client")),
                ("elapsed", rows.seconds(now - float(start.get("started_at") or now))),
                ("status", progress.get("status")),
                ("ttfb", rows.ms(progress.get("ttfb_ms"))),
                ("ttft", rows.ms(progress.get("ttft_ms"))),
                ("tokens", progress.get("tokens")),
                ("wire tok/s", rows.rate(progress.get("wire_tokens_per_s"))),
                ("bytes", rows.size(progress.get("bytes"))),
                ("pull", (progress.get("pull") or {}).get("status")),
            ],
        )
        text.append("\nPrompt\n", style="bold underline")
        text.append(_block(start.get("prompt") or "(not shown)") + "\n")
        text.append("\nResponse so far (last 2,000 characters)\n", style="bold underline")
        text.append(_block(progress.get("response_tail") or ""))
        return text
    record = state.record_by_id(key)
    if record is None:
        return Text("This request is no longer known.", style="dim")
    style = "bold red" if rows.is_error(record) else "bold green"
    text.append(f"FINISHED {record.status}\n", style=style)
    _pairs(
        text,
        [
            ("request", f"{record.method} {record.path}"),
            ("model", record.model),
            ("client", record.client),
            ("started", record.started_at),
            ("error", record.error),
            ("flags", ",".join(record.flags)),
            ("done reason", record.done_reason),
            ("ttfb", rows.ms(record.ttfb_ms)),
            ("ttft", rows.ms(record.ttft_ms)),
            ("generation", rows.ms(record.gen_ms)),
            ("total", rows.ms(record.total_ms)),
            (
                "gap p50/p95/max",
                f"{rows.ms(record.gap_p50_ms)} / {rows.ms(record.gap_p95_ms)} / {rows.ms(record.gap_max_ms)}",
            ),
            ("wire tok/s", rows.rate(record.wire_tokens_per_s)),
            ("eval tok/s", rows.rate(record.eval_tokens_per_s)),
            ("prompt tokens", record.prompt_eval_count),
            ("eval tokens", record.eval_count),
            ("load", rows.ms(record.load_duration_ms)),
            ("prompt eval", rows.ms(record.prompt_eval_duration_ms)),
            ("eval", rows.ms(record.eval_duration_ms)),
            ("bytes in/out", f"{rows.size(record.request_bytes)} / {rows.size(record.response_bytes)}"),
            *_resource_pairs(record),
            *_cost_pairs(state, record),
        ],
    )
    if record.system:
        text.append("\nSystem\n", style="bold underline")
        text.append(_block(record.system) + "\n")
    text.append("\nPrompt\n", style="bold underline")
    text.append(_block(record.prompt or "(none)") + "\n")
    text.append("\nResponse\n", style="bold underline")
    text.append(_block(record.response_text or "(none)"))
    return text
