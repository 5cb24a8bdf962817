"""The report's charts as plotly figure specs (plain dicts: data + layout), built from the analysis.

Per-request charts draw at most MAX_DRAWN_REQUESTS requests (every request with an error or in a finding's
evidence, then an even sample of the rest) and say so; distributions use exact precomputed box statistics;
counts over time are aggregated into at most MAX_BUCKETS time buckets. Hover texts live once in the page's
data (``hover``); traces refer to them by index (``hoverRefs``), which the page's script resolves.
"""

from __future__ import annotations

import heapq
import html
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from analyzer.protocol.timing import percentile
from analyzer.protocol.untrusted import clip, for_terminal
from analyzer.report.analysis import Analysis
from analyzer.report.derive import Request
from analyzer.report.errors import CATEGORIES
from analyzer.report.finding import iso

MAX_DRAWN_REQUESTS = 5000
SERIES_NAME_WIDTH = 80  # a model name as a trace/legend name is cut here (clients choose model names)
FOCUS_AFTER_S = 6 * 3600  # a longer period opens the timeline on its busiest hour, drawn in full
FOCUS_MAX_REQUESTS = 1500
BREAKDOWN_MAX_BARS = 1500
MAX_BUCKETS = 120
BUCKET_SIZES_S = (1, 5, 10, 30, 60, 300, 600, 1800, 3600, 3 * 3600, 6 * 3600, 12 * 3600, 86400, 7 * 86400)
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22", "#7f7f7f")
ERROR_COLOURS = {
    "out_of_memory": "#b2182b",
    "server_error": "#d6604d",
    "error_mid_stream": "#f4a582",
    "upstream_failed": "#762a83",
    "model_not_found": "#fdb863",
    "context_exceeded": "#e08214",
    "bad_request": "#fee0b6",
    "client_aborted": "#92c5de",
}
# Resource tracks under the timeline (shared time axis): the axis title and the value of a request, from its
# resource columns. A track is drawn when a drawn request has a value for it; bars are coloured by model.
TRACKS: tuple[tuple[str, Callable[[Request], float | None]], ...] = (
    ("GPU %", lambda r: r.gpu_util_mean_pct),
    ("power W", lambda r: r.power_mean_w),
    ("GPU mem MB", lambda r: r.gpu_mem_max_mb),
    ("RSS MB", lambda r: r.server_rss_max_mb),
    ("CPU cores", lambda r: None if r.server_cpu_ms is None or not r.total_ms else r.server_cpu_ms / r.total_ms),
    ("J/token", lambda r: r.joules_per_token),
)
TRACK_PX = 90
TRACK_GAP_PX = 18
NO_RESOURCES_NOTE = (
    "no resource samples: enable ollama_resources to see GPU, power and memory here (ollama-wire resources --check)"
)
SEGMENTS: tuple[tuple[str, str, str], ...] = (
    ("first", "to the first token (wire only: no Ollama counters)", "#bcbd22"),
    ("load", "load (Ollama's load_duration)", "#ff7f0e"),
    ("wait", "hidden wait (queue for a slot)", "#d62728"),
    ("prompt", "prompt evaluation", "#9467bd"),
    ("thinking", "thinking (first thinking → first answer token)", "#17becf"),
    ("eval", "generation (answer)", "#2ca02c"),
    ("overhead", "transfer / overhead (wire − Ollama)", "#7f7f7f"),
)


@dataclass
class Figure:
    """One chart: a div id, a heading, a how-to-read line, notes (sampling), the plotly data and layout."""

    id: str
    title: str
    explain: str
    data: list[dict[str, Any]]
    layout: dict[str, Any]
    notes: list[str] = field(default_factory=list)
    points: int = 0  # data points drawn (for the page's footer and the browser test)
    parts: dict[str, int] = field(default_factory=dict)  # points per plotly subplot ("xy", "xy2", …) when several

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "data": self.data, "layout": self.layout, "points": self.points, "parts": self.parts}


def _ms(seconds: float) -> float:
    return round(seconds * 1000.0, 1)


def series_label(model: str) -> str:
    """A model name as a trace/legend/axis label: cut, control and bidi characters escaped, and HTML-escaped
    (plotly renders a subset of HTML in names: ``<a href>``, ``<b>``)."""
    return html.escape(for_terminal(clip(model, SERIES_NAME_WIDTH)), quote=False)


def _fmt(value: float | None, unit: str = "ms") -> str:
    return "–" if value is None else f"{value:,.0f} {unit}" if value >= 100 else f"{value:.1f} {unit}"


def hover_text(r: Request) -> str:
    """What hovering a request shows: model, when, prompt preview, timings, outcome."""
    parts = [
        f"<b>{series_label(r.model or '-')}</b> {html.escape(r.kind)} · {r.started_at[:23]}Z",
        f"prompt: {html.escape(for_terminal(r.prompt[:80])) or '–'}",
        f"TTFT {_fmt(r.ttft_ms)} · total {_fmt(r.total_ms)} · {r.eval_count or 0} tokens out",
    ]
    if r.total_duration_ms is not None:
        parts.append(
            f"load {_fmt(r.load_ms)} · wait {_fmt(r.hidden_wait_ms)} · prompt eval {_fmt(r.prompt_eval_ms)} · "
            f"gen {_fmt(r.eval_ms)} · overhead {_fmt(r.wire_overhead_ms)}"
        )
    if r.sampled:
        parts.append(resource_text(r))
    outcome = f"status {r.status or '–'} · done {html.escape(for_terminal(clip(r.done_reason or '–', 40)))}"
    category = r.category
    if category:
        outcome += f" · <b>{category}</b>"
    parts.append(outcome)
    parts.append(f"id {html.escape(r.id)}")
    return "<br>".join(parts)


def resource_text(r: Request) -> str:
    """The hover's resource line: what the machine did during the request."""
    shown = []
    if r.gpu_util_mean_pct is not None:
        shown.append(f"GPU {r.gpu_util_mean_pct:.0f}%")
    if r.gpu_mem_max_mb is not None:
        shown.append(f"GPU mem {_fmt(r.gpu_mem_max_mb, 'MB')}")
    if r.power_mean_w is not None:
        shown.append(f"{_fmt(r.power_mean_w, 'W')}")
    if r.energy_j is not None:
        per_token = "" if r.joules_per_token is None else f" ({r.joules_per_token:.3g} J/token)"
        shown.append(f"{_fmt(r.energy_j, 'J')}{per_token}")
    if r.server_cpu_ms is not None:
        shown.append(f"server CPU {_fmt(r.server_cpu_ms)}")
    if r.server_rss_max_mb is not None:
        shown.append(f"RSS {_fmt(r.server_rss_max_mb, 'MB')}")
    return " · ".join(shown)


def even_sample(rows: Sequence[Request], count: int) -> list[Request]:
    """``count`` of ``rows`` spread evenly over them (all when they fit)."""
    if count >= len(rows):
        return list(rows)
    if count <= 0:
        return []
    step = len(rows) / count
    return [rows[int(i * step)] for i in range(count)]


def choose_drawn(requests: Sequence[Request], keep: set[str], limit: int = MAX_DRAWN_REQUESTS) -> list[Request]:
    """All requests when they fit. Else the ones in ``keep`` (errors, evidence) — all of them if they take at most
    half of ``limit``, else an even sample of that half — plus an even sample of the rest; oldest first."""
    if len(requests) <= limit:
        return list(requests)
    kept = even_sample([r for r in requests if r.id in keep], limit // 2)
    rest = even_sample([r for r in requests if r.id not in keep], limit - len(kept))
    return sorted(kept + rest, key=lambda r: r.start)


def model_colours(models: Sequence[str]) -> dict[str, str]:
    return {m: PALETTE[i % len(PALETTE)] for i, m in enumerate(models)}


def bucket_seconds(span_s: float) -> int:
    """The smallest bucket size that keeps ``span_s`` within MAX_BUCKETS buckets."""
    for size in BUCKET_SIZES_S:
        if span_s / size <= MAX_BUCKETS:
            return size
    return int(span_s / MAX_BUCKETS) + 1


def _bucket_label(size: int) -> str:
    if size % 86400 == 0:
        return f"{size // 86400} d"
    if size % 3600 == 0:
        return f"{size // 3600} h"
    if size % 60 == 0:
        return f"{size // 60} min"
    return f"{size} s"


def _time_axis() -> dict[str, Any]:
    return {"type": "date", "title": {"text": "time (UTC)"}}


def _layout(**extra: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "margin": {"l": 60, "r": 20, "t": 40, "b": 50},
        "height": 340,
        "legend": {"orientation": "h", "x": 0, "y": 1.02, "yanchor": "bottom"},
        "hovermode": "closest",
        "template": None,
        "paper_bgcolor": "#ffffff",
        "plot_bgcolor": "#fafafa",
    }
    base.update(extra)
    return base


class ChartBuilder:
    """Builds every figure for one analysis; ``hover`` collects the shared hover texts."""

    def __init__(self, analysis: Analysis) -> None:
        self.analysis = analysis
        self.requests = analysis.requests
        evidence = {i for f in analysis.findings for i in f.ids}
        keep = evidence | {r.id for r in self.requests if r.category}
        self.focus = self._busiest_hour(analysis)
        focus = [r for r in self.requests if self.focus and self.focus[0] <= r.start < self.focus[1]]
        self.focus_capped = len(focus) > FOCUS_MAX_REQUESTS
        focus = focus[:FOCUS_MAX_REQUESTS]
        focus_ids = {r.id for r in focus}
        sample = choose_drawn(self.requests, keep, MAX_DRAWN_REQUESTS - len(focus))
        self.drawn = sorted([*focus, *(r for r in sample if r.id not in focus_ids)], key=lambda r: r.start)
        kept = sum(1 for r in self.drawn if r.id in keep)
        self.sampled_note = (
            f"Drawn: {len(self.drawn):,} of {len(self.requests):,} requests — "
            + (
                "every request with an error or in a finding"
                if kept == len(keep)
                else f"{kept:,} of the {len(keep):,} requests with an error or in a finding (evenly spread)"
            )
            + ", plus an even sample of the rest (the browser cannot draw them all)."
            if len(self.drawn) < len(self.requests)
            else ""
        )
        self.hover: list[str] = [hover_text(r) for r in self.drawn]
        self.index = {r.id: i for i, r in enumerate(self.drawn)}
        per_model = analysis.headline.get("per_model", [])
        models = [series_label(row["model"]) for row in per_model]
        self.colours = model_colours(models)
        self.models = models
        # the row summing the models beyond the busiest (headline.model_rows): their requests' series
        self.others_label = next((m for m, row in zip(models, per_model, strict=True) if row.get("others")), "others")

    def colour(self, series: str) -> str:
        return self.colours.get(series, "#999")

    def series(self, r: Request) -> str:
        """The trace a request is drawn in: its model when it is one of the per-model rows, else the others'
        row (clients choose model names: thousands of traces would bury the legend); names cut to 80."""
        if not r.model:
            return "-"
        name = series_label(r.model)
        return name if name in self.colours else self.others_label

    def _busiest_hour(self, analysis: Analysis) -> tuple[float, float] | None:
        """[start, end) of the busiest hour when the period is long enough to need a focus."""
        if not self.requests or self.requests[-1].start - self.requests[0].start <= FOCUS_AFTER_S:
            return None
        busiest = (analysis.headline.get("busiest_hour") or {}).get("start")
        if not busiest:
            return None
        start = datetime.fromisoformat(busiest).timestamp()
        return start, start + 3600.0

    def _notes(self) -> list[str]:
        return [self.sampled_note] if self.sampled_note else []

    def figures(self) -> list[Figure]:
        builders: list[Callable[[], Figure]] = [
            self.timeline,
            self.breakdown,
            self.ttft_box,
            self.rate_box,
            self.over_time,
            self.prompt_vs_count,
            self.length_vs_reason,
            self.errors_over_time,
            self.flags_bar,
        ]
        return [build() for build in builders]

    def timeline(self) -> Figure:
        lanes: list[tuple[float, int]] = []  # (end, lane) heap of busy lanes
        free: list[int] = []
        lane_of: dict[str, int] = {}
        for r in self.drawn:
            while lanes and lanes[0][0] <= r.start:
                heapq.heappush(free, heapq.heappop(lanes)[1])
            lane = heapq.heappop(free) if free else len(lanes)
            lane_of[r.id] = lane
            heapq.heappush(lanes, (max(r.end, r.start + 0.001), lane))
        data: list[dict[str, Any]] = []
        by_model: dict[str, list[Request]] = defaultdict(list)
        for r in self.drawn:
            by_model[self.series(r)].append(r)
        for model, rows in by_model.items():
            data.append(
                {
                    "type": "bar",
                    "orientation": "h",
                    "name": model,
                    "legendgroup": model,
                    "base": [_ms(r.start) for r in rows],
                    "x": [max(_ms(r.end - r.start), 1.0) for r in rows],
                    "y": [lane_of[r.id] for r in rows],
                    "width": 0.8,
                    "marker": {
                        "color": self.colour(model),
                        "line": {
                            "color": ["#d00" if r.category else "rgba(0,0,0,0)" for r in rows],
                            "width": 1.5,
                        },
                    },
                    "hoverRefs": [self.index[r.id] for r in rows],
                }
            )
        firsts = [r for r in self.drawn if r.first_token is not None]
        data.append(
            {
                "type": "scatter",
                "mode": "markers",
                "name": "first token",
                "x": [_ms(r.first_token or 0.0) for r in firsts],
                "y": [lane_of[r.id] for r in firsts],
                "marker": {"symbol": "line-ns-open", "size": 7, "color": "rgba(0,0,0,0.55)", "line": {"width": 1.5}},
                "hoverRefs": [self.index[r.id] for r in firsts],
            }
        )
        lanes_px = min(610, 100 + 14 * (max(lane_of.values(), default=0) + 1))
        timeline_points = len(self.drawn) + len(firsts)
        tracks, track_traces, parts = self._tracks()
        data.extend(track_traces)
        xaxis = _time_axis()
        layout: dict[str, Any] = {
            "height": lanes_px + 90 + len(tracks) * (TRACK_PX + TRACK_GAP_PX),
            "barmode": "overlay",
            "xaxis": xaxis,
            "yaxis": {"title": {"text": "concurrent request"}, "autorange": "reversed", "dtick": 1},
        }
        notes = self._notes()
        if tracks:
            plot_px = lanes_px + len(tracks) * (TRACK_PX + TRACK_GAP_PX)
            bottom = 1.0 - lanes_px / plot_px
            layout["yaxis"]["domain"] = [round(bottom, 4), 1.0]
            for i, title in enumerate(tracks, 2):
                top = bottom - TRACK_GAP_PX / plot_px
                bottom = max(0.0, top - TRACK_PX / plot_px)
                layout[f"yaxis{i}"] = {
                    "title": {"text": title},
                    "domain": [round(bottom, 4), round(top, 4)],
                    "anchor": "x",
                    "rangemode": "tozero",
                }
            xaxis["anchor"] = f"y{len(tracks) + 1}"
            parts = {"xy": timeline_points, **parts}
        elif not any(r.sampled for r in self.requests):
            notes.append(NO_RESOURCES_NOTE)
        if self.focus:
            xaxis["range"] = [_ms(self.focus[0]), _ms(self.focus[1])]
            notes.append(
                f"Opened on the busiest hour ({iso(self.focus[0])[:13].replace('T', ' ')}:00 UTC), "
                + (f"its first {FOCUS_MAX_REQUESTS:,} requests" if self.focus_capped else "every request of it")
                + " drawn; double-click the chart to see the whole period, drag to zoom."
            )
        explain = (
            "One bar per request from its first request byte to its last response byte, one row per concurrent "
            "request, coloured by model; the tick is the first token; a red outline marks an error. Overlapping "
            "bars are concurrency, gaps are idle time. Drag to zoom, double-click to reset."
        )
        if tracks:
            explain += (
                " Below, on the same time axis, what the machine did during each request (one column per request, "
                "as wide as the request, in its model's colour): GPU utilisation and power are the whole device's "
                "means over the request, memory the peak, CPU cores the request's share of the Ollama server's CPU "
                "time per second, J/token its share of the energy per output token. Idle time between requests is "
                "in no record, so nothing is drawn there."
            )
        return Figure(
            "timeline",
            "Timeline of requests" + (" and what the machine did" if tracks else ""),
            explain,
            data,
            _layout(**layout),
            notes=notes,
            points=sum(parts.values()) if parts else timeline_points,
            parts=parts,
        )

    def _tracks(self) -> tuple[list[str], list[dict[str, Any]], dict[str, int]]:
        """The resource tracks the drawn requests have values for: axis titles, traces (one column per request,
        as wide as the request, on y2, y3, …; one trace per model, in the model's colour) and points per
        subplot."""
        titles: list[str] = []
        traces: list[dict[str, Any]] = []
        parts: dict[str, int] = {}
        for title, value in TRACKS:
            axis = len(titles) + 2
            by_model: dict[str, list[tuple[Request, float]]] = defaultdict(list)
            for r in self.drawn:
                v = value(r)
                if v is not None:
                    by_model[self.series(r)].append((r, v))
            if not by_model:
                continue
            for model, rows in by_model.items():
                traces.append(
                    {
                        "type": "bar",
                        "name": model,
                        "legendgroup": model,
                        "showlegend": False,
                        "x": [_ms((r.start + r.end) / 2) for r, _ in rows],
                        "width": [max(_ms(r.end - r.start), 1.0) for r, _ in rows],
                        "y": [round(v, 3) for _, v in rows],
                        "yaxis": f"y{axis}",
                        "marker": {"color": self.colour(model), "opacity": 0.7, "line": {"width": 0}},
                        "hoverRefs": [self.index[r.id] for r, _ in rows],
                    }
                )
            titles.append(title)
            parts[f"xy{axis}"] = sum(len(rows) for rows in by_model.values())
        return titles, traces, parts

    @staticmethod
    def _wire_only(r: Request) -> bool:
        """A stream without Ollama's durations (OpenAI-compatible and Anthropic APIs): drawn from the wire's times."""
        return r.total_duration_ms is None and bool(r.stream) and r.ttft_ms is not None and r.total_ms is not None

    @classmethod
    def _segments(cls, r: Request) -> dict[str, float]:
        if cls._wire_only(r):
            thinking = min(r.thinking_ms or 0.0, max(0.0, r.total_ms - r.ttft_ms))
            answer = max(0.0, r.total_ms - r.ttft_ms - thinking)
            wire = {"first": r.ttft_ms, "thinking": thinking, "eval": answer}
            return {key: wire.get(key, 0.0) for key, _, _ in SEGMENTS}
        # Thinking is generation too: the wire's thinking_ms is carved out of Ollama's eval_duration.
        generation = r.eval_ms or 0.0
        thinking = min(r.thinking_ms or 0.0, generation)
        return {
            "first": 0.0,
            "load": r.load_ms or 0.0,
            "wait": r.hidden_wait_ms or 0.0,
            "prompt": r.prompt_eval_ms or 0.0,
            "thinking": thinking,
            "eval": generation - thinking,
            "overhead": r.wire_overhead_ms or 0.0,
        }

    def breakdown(self) -> Figure:
        timed = [r for r in self.requests if r.total_duration_ms is not None or self._wire_only(r)]
        untimed = len(self.requests) - len(timed)
        wire_only = sum(1 for r in timed if self._wire_only(r))
        notes = []
        if wire_only:
            notes.append(
                (f"{wire_only:,} streams carry" if wire_only != 1 else "1 stream carries")
                + " no Ollama durations (OpenAI-compatible and Anthropic APIs): their bars are the wire's view — "
                "time to the first token, thinking, the answer."
            )
        if untimed:
            notes.append(
                (f"{untimed:,} requests carry" if untimed != 1 else "1 request carries")
                + " no durations to split (non-streamed compatible-API replies, model management, errors, aborts):"
                " not in this chart."
            )
        data: list[dict[str, Any]] = []
        if len(timed) <= BREAKDOWN_MAX_BARS:
            drawn = [r for r in timed if r.id in self.index]
            xs = list(range(1, len(drawn) + 1))
            for key, label, colour in SEGMENTS:
                data.append(
                    {
                        "type": "bar",
                        "name": label,
                        "x": xs,
                        "y": [round(self._segments(r)[key], 1) for r in drawn],
                        "marker": {"color": colour},
                        "hoverRefs": [self.index[r.id] for r in drawn],
                    }
                )
            xaxis: dict[str, Any] = {"title": {"text": "request (in time order)"}}
            points = len(drawn) * len(SEGMENTS)
        else:
            size, buckets = self._buckets(timed)
            notes.append(
                f"{len(timed):,} requests are too many to draw one bar each: each bar is the mean per request over "
                f"{_bucket_label(size)}."
            )
            starts = sorted(buckets)
            means: dict[str, list[float]] = {key: [] for key, _, _ in SEGMENTS}
            for b in starts:
                rows = buckets[b]
                segments = [self._segments(r) for r in rows]
                for key in means:
                    means[key].append(round(sum(seg[key] for seg in segments) / len(rows), 1))
            for key, label, colour in SEGMENTS:
                data.append(
                    {
                        "type": "bar",
                        "name": label,
                        "x": [_ms(b) for b in starts],
                        "y": means[key],
                        "marker": {"color": colour},
                        "hovertemplate": f"{label}: %{{y:.0f}} ms<extra>%{{x}}</extra>",
                    }
                )
            xaxis = _time_axis()
            points = len(starts) * len(SEGMENTS)
        return Figure(
            "breakdown",
            "Where each request's time went",
            "Stacked per request: Ollama's load_duration, the hidden wait (total_duration − load − prompt eval − "
            "eval: queueing for a busy model's slot), prompt evaluation, generation split into thinking (first "
            "thinking token to first answer token, as the wire saw it) and the answer, and what the wire added "
            "beyond Ollama's own total (network, proxy, client). A tall red segment is queueing; a tall orange "
            "one, a model load; a tall teal one, a model thinking at length.",
            data,
            _layout(
                barmode="stack",
                xaxis=xaxis,
                yaxis={"title": {"text": "ms"}},
                legend={"orientation": "h", "x": 0, "y": 1.02, "yanchor": "bottom", "traceorder": "normal"},
            ),
            notes=notes,
            points=points,
        )

    def _span(self) -> list[float]:
        """The whole report's time range (ms), so time charts line up."""
        if not self.requests:
            return [0.0, 1.0]
        return [_ms(min(r.start for r in self.requests)), _ms(max(r.end for r in self.requests))]

    def _buckets(self, requests: Sequence[Request]) -> tuple[int, dict[float, list[Request]]]:
        first = min(r.start for r in requests)
        size = bucket_seconds(max(r.start for r in requests) - first)
        buckets: dict[float, list[Request]] = defaultdict(list)
        for r in requests:
            buckets[(r.start // size) * size].append(r)
        return size, buckets

    def _box(self, name: str, colour: str, groups: dict[str, list[float]]) -> dict[str, Any] | None:
        names = [m for m in self.models if groups.get(m)]
        if not names:
            return None
        stats = [sorted(groups[m]) for m in names]
        return {
            "type": "box",
            "name": name,
            "x": names,
            "q1": [round(percentile(s, 25), 2) for s in stats],
            "median": [round(percentile(s, 50), 2) for s in stats],
            "q3": [round(percentile(s, 75), 2) for s in stats],
            "lowerfence": [round(percentile(s, 5), 2) for s in stats],
            "upperfence": [round(percentile(s, 95), 2) for s in stats],
            "marker": {"color": colour},
            "hoverinfo": "y+name",
        }

    def _group(self, value: Callable[[Request], float | None]) -> dict[str, list[float]]:
        groups: dict[str, list[float]] = defaultdict(list)
        for r in self.requests:
            v = value(r)
            if v is not None and r.model:
                groups[self.series(r)].append(v)
        return groups

    def ttft_box(self) -> Figure:
        wire = self._group(lambda r: r.ttft_ms if r.stream else None)
        ollama = self._group(
            lambda r: None if r.load_ms is None or r.prompt_eval_ms is None else r.load_ms + r.prompt_eval_ms
        )
        data = [
            t
            for t in (
                self._box("TTFT on the wire", "#1f77b4", wire),
                self._box("Ollama: load + prompt eval", "#ff7f0e", ollama),
            )
            if t
        ]
        return Figure(
            "ttft",
            "Time to first token per model",
            "Boxes: 25th–75th percentile and median, whiskers 5th–95th, over every request (not sampled). Blue is "
            "what clients waited for on the wire (streamed requests); orange is Ollama's own share before the "
            "first token (load + prompt evaluation). A blue box far above the orange one is queueing or network.",
            data,
            _layout(boxmode="group", yaxis={"title": {"text": "ms"}, "type": "log", "dtick": 1}),
            points=sum(len(t["x"]) for t in data),
        )

    def rate_box(self) -> Figure:
        wire = self._group(lambda r: r.wire_tokens_per_s)
        ollama = self._group(lambda r: r.eval_tokens_per_s)
        data = [
            t
            for t in (
                self._box("tokens/s on the wire", "#1f77b4", wire),
                self._box("Ollama's eval tokens/s", "#2ca02c", ollama),
            )
            if t
        ]
        return Figure(
            "rate",
            "Generation speed per model",
            "Tokens per second: as the client saw them arrive (wire) and as Ollama measured its own generation "
            "(eval_count / eval_duration). Boxes as above, over every request.",
            data,
            _layout(boxmode="group", yaxis={"title": {"text": "tokens/s"}}),
            points=sum(len(t["x"]) for t in data),
        )

    def over_time(self) -> Figure:
        data: list[dict[str, Any]] = []
        points = 0
        by_model: dict[str, list[Request]] = defaultdict(list)
        for r in self.drawn:
            by_model[self.series(r)].append(r)
        for model, rows in by_model.items():
            colour = self.colour(model)
            ttft = [r for r in rows if r.ttft_ms is not None and r.stream]
            rate = [r for r in rows if r.tokens_per_s]
            if ttft:
                data.append(
                    {
                        "type": "scatter",
                        "mode": "markers",
                        "name": model,
                        "legendgroup": model,
                        "x": [_ms(r.start) for r in ttft],
                        "y": [round(r.ttft_ms or 0.0, 1) for r in ttft],
                        "marker": {"color": colour, "size": 5},
                        "hoverRefs": [self.index[r.id] for r in ttft],
                    }
                )
            if rate:
                data.append(
                    {
                        "type": "scatter",
                        "mode": "markers",
                        "name": model,
                        "legendgroup": model,
                        "showlegend": not ttft,
                        "x": [_ms(r.start) for r in rate],
                        "y": [round(r.tokens_per_s or 0.0, 1) for r in rate],
                        "yaxis": "y2",
                        "marker": {"color": colour, "size": 5, "symbol": "diamond"},
                        "hoverRefs": [self.index[r.id] for r in rate],
                    }
                )
            points += len(ttft) + len(rate)
        return Figure(
            "overtime",
            "TTFT and tokens/s over time",
            "Top: time to first token of each streamed request (log scale); bottom: its tokens per second (Ollama's "
            "own rate, else the wire's). A band of slow points is a slow period.",
            data,
            _layout(
                height=480,
                xaxis={**_time_axis(), "anchor": "y2"},
                yaxis={"title": {"text": "TTFT ms"}, "type": "log", "dtick": 1, "domain": [0.55, 1]},
                yaxis2={"title": {"text": "tokens/s"}, "domain": [0, 0.45], "anchor": "x", "rangemode": "tozero"},
            ),
            notes=self._notes(),
            points=points,
        )

    def prompt_vs_count(self) -> Figure:
        truncated = {i for f in self.analysis.findings if f.code == "context_truncated" for i in f.ids}
        data: list[dict[str, Any]] = []
        by_model: dict[str, list[Request]] = defaultdict(list)
        for r in self.drawn:
            if r.prompt_eval_count and r.prompt_chars and r.kind in ("generate", "chat"):
                by_model[self.series(r)].append(r)
        for model, rows in by_model.items():
            data.append(
                {
                    "type": "scatter",
                    "mode": "markers",
                    "name": model,
                    "x": [r.prompt_chars for r in rows],
                    "y": [r.prompt_eval_count for r in rows],
                    "marker": {"color": self.colour(model), "size": 6},
                    "hoverRefs": [self.index[r.id] for r in rows],
                }
            )
        flagged = [r for rows in by_model.values() for r in rows if r.id in truncated]
        if flagged:
            data.append(
                {
                    "type": "scatter",
                    "mode": "markers",
                    "name": "context_truncated",
                    "x": [r.prompt_chars for r in flagged],
                    "y": [r.prompt_eval_count for r in flagged],
                    "marker": {"color": "#d00", "size": 11, "symbol": "x-thin-open", "line": {"width": 2}},
                    "hoverRefs": [self.index[r.id] for r in flagged],
                }
            )
        return Figure(
            "context",
            "Prompt size vs evaluated prompt tokens",
            "Each point is a generate/chat request: the characters of its prompt (chat: all messages; plus the "
            "system prompt) against Ollama's prompt_eval_count. "
            "Points climb with prompt size; a flat ceiling that prompts keep growing past is context truncation "
            "(red ×: the context_truncated finding). Low counts for big prompts can also be Ollama's prompt cache.",
            data,
            _layout(
                xaxis={"title": {"text": "prompt characters"}, "type": "log", "dtick": 1},
                yaxis={"title": {"text": "prompt_eval_count"}},
            ),
            notes=self._notes(),
            points=sum(len(t["x"]) for t in data),
        )

    def length_vs_reason(self) -> Figure:
        groups: dict[str, list[float]] = defaultdict(list)
        for r in self.requests:
            if r.eval_count is not None and r.kind in ("generate", "chat"):
                groups[r.done_reason or "none"].append(float(r.eval_count))
        reasons = sorted(groups, key=lambda k: -len(groups[k]))
        data: list[dict[str, Any]] = []
        if reasons:
            stats = [sorted(groups[k]) for k in reasons]
            data.append(
                {
                    "type": "box",
                    "name": "tokens out",
                    "x": [f"{k} ({len(groups[k]):,})" for k in reasons],
                    "q1": [percentile(s, 25) for s in stats],
                    "median": [percentile(s, 50) for s in stats],
                    "q3": [percentile(s, 75) for s in stats],
                    "lowerfence": [s[0] for s in stats],
                    "upperfence": [s[-1] for s in stats],
                    "marker": {"color": "#2ca02c"},
                }
            )
        return Figure(
            "length",
            "Output length by done_reason",
            'Tokens generated (eval_count) per way the answer ended, with the number of requests: "stop" is a '
            'natural end; "length" hit num_predict / max_tokens (or the context) and is cut off. Whiskers: '
            "min–max.",
            data,
            _layout(yaxis={"title": {"text": "eval_count"}}),
            points=len(reasons),
        )

    def errors_over_time(self) -> Figure:
        failed = [(r, c) for r in self.requests if (c := r.category)]
        data: list[dict[str, Any]] = []
        notes: list[str] = []
        if failed:
            first, last = self._span()
            size = bucket_seconds((last - first) / 1000.0)
            by_cat: dict[str, Counter[float]] = defaultdict(Counter)
            for r, category in failed:
                by_cat[category][(r.start // size) * size] += 1
            for category in CATEGORIES:
                counts = by_cat.get(category)
                if not counts:
                    continue
                starts = sorted(counts)
                data.append(
                    {
                        "type": "bar",
                        "name": f"{category} ({sum(counts.values()):,})",
                        "x": [_ms(b + size / 2) for b in starts],
                        "y": [counts[b] for b in starts],
                        "width": size * 1000 * 0.9,
                        "marker": {"color": ERROR_COLOURS.get(category, "#999")},
                    }
                )
            notes.append(f"Counted per {_bucket_label(size)}.")
        return Figure(
            "errors",
            "Errors over time by category",
            "Failed requests per period, stacked by category (client aborts included: the client hung up).",
            data,
            _layout(
                barmode="stack",
                xaxis={**_time_axis(), "range": self._span()},
                yaxis={"title": {"text": "requests"}, "rangemode": "tozero", "tickformat": ",d"},
            ),
            notes=notes,
            points=sum(len(t["x"]) for t in data),
        )

    def flags_bar(self) -> Figure:
        counts = Counter(flag for r in self.requests for flag in r.flags)
        flags = [flag for flag, _ in counts.most_common()]
        data: list[dict[str, Any]] = []
        if flags:
            data.append(
                {
                    "type": "bar",
                    "orientation": "h",
                    "name": "records",
                    "x": [counts[f] for f in flags],
                    "y": flags,
                    "marker": {"color": "#8c564b"},
                }
            )
        return Figure(
            "flags",
            "Record flags (capture quality, aborts, cut bodies)",
            "How many records carry each flag (docs/record.md): gap_in_capture and capture_* mean a capture "
            "missed bytes or cut the exchange; client_aborted / upstream_failed who hung up; truncated_body a text "
            "cap.",
            data,
            _layout(
                height=max(200, 90 + 26 * len(flags)),
                yaxis={"autorange": "reversed"},
                xaxis={"title": {"text": "records"}, "tickformat": ",d", "rangemode": "tozero"},
                margin={"l": 220, "r": 20, "t": 10, "b": 50},
            ),
            points=len(flags),
        )
