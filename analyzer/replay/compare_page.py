"""The comparison page: one self-contained HTML file in the report's style (plotly inline, no network) — the
verdict first, then per-model numbers, side-by-side distributions, the paired timeline and the findings diff."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from analyzer.replay.compare import Comparison
from analyzer.replay.compare_text import model_rows
from analyzer.report.charts import Figure, _layout
from analyzer.report.derive import Request
from analyzer.report.page import SCRIPT, STYLE, _e, _json_for_script, plotly_js

BASELINE_COLOUR = "#8c96a8"
CANDIDATE_COLOUR = "#1f77b4"
MAX_TIMELINE_PAIRS = 2000

EXTRA_STYLE = """
.verdict{font-size:18px;font-weight:600;margin:0}
.diff span{display:inline-block;margin:2px 6px 2px 0;padding:2px 8px;border-radius:4px;font-size:13px}
.diff .resolved{background:#e3f4e8;color:#1a7f37}.diff .new{background:#fde8e8;color:#b2182b}
.diff .kept{background:#eef0f4;color:#444}
td.sig{font-weight:700}
.pairs{display:grid;grid-template-columns:repeat(auto-fit,minmax(520px,1fr));gap:10px 18px}
.pairs h3{font-size:15px;margin:6px 0 0}
"""


def _side_boxes(
    fig_id: str,
    title: str,
    explain: str,
    value: Callable[[Request], float | None],
    base: Sequence[Request],
    cand: Sequence[Request],
    names: tuple[str, str],
    unit: str,
) -> Figure:
    data = []
    points = 0
    for side, colour, name in ((base, BASELINE_COLOUR, names[0]), (cand, CANDIDATE_COLOUR, names[1])):
        xs, ys = [], []
        for r in side:
            v = value(r)
            if v is not None:
                xs.append(r.model or "-")
                ys.append(v)
        points += len(ys)
        data.append(
            {
                "type": "box",
                "name": name,
                "x": xs,
                "y": ys,
                "marker": {"color": colour},
                "boxpoints": "all",
                "jitter": 0.4,
                "pointpos": 0,
            }
        )
    layout = _layout(height=300, boxmode="group", yaxis={"title": {"text": unit}, "rangemode": "tozero"})
    return Figure(fig_id, title, explain, data, layout, points=points)


def _timeline(result: Comparison) -> Figure:
    base, cand = result.requests
    shown = list(zip(base, cand, strict=True))[:MAX_TIMELINE_PAIRS]
    data = []
    notes = []
    if len(base) > MAX_TIMELINE_PAIRS:
        notes.append(f"The first {MAX_TIMELINE_PAIRS:,} of {len(base):,} pairs are drawn.")
    points = 0
    for index, (side, colour, name) in enumerate(
        ((0, BASELINE_COLOUR, result.baseline.name), (1, CANDIDATE_COLOUR, result.candidate.name))
    ):
        rows = [pair[side] for pair in shown]
        if not rows:
            continue
        origin = min(r.start for r in rows)
        xs: list[float | None] = []
        ys: list[float | None] = []
        tx, ty = [], []
        offset = -0.18 if index == 0 else 0.18
        for number, r in enumerate(rows, 1):
            xs += [r.start - origin, r.end - origin, None]
            ys += [number + offset, number + offset, None]
            if r.first_token is not None:
                tx.append(r.first_token - origin)
                ty.append(number + offset)
        points += len(rows)
        data.append(
            {
                "type": "scatter",
                "mode": "lines",
                "name": f"{name}: start → end",
                "x": xs,
                "y": ys,
                "line": {"color": colour, "width": 4},
                "hoverinfo": "skip",
            }
        )
        data.append(
            {
                "type": "scatter",
                "mode": "markers",
                "name": f"{name}: first token",
                "x": tx,
                "y": ty,
                "marker": {"color": colour, "symbol": "line-ns-open", "size": 10, "line": {"width": 2}},
            }
        )
    layout = _layout(
        height=max(300, min(900, 60 + 14 * len(shown))),
        xaxis={"title": {"text": "seconds after each side's first request"}},
        yaxis={"title": {"text": "request (in the baseline's order)"}, "autorange": "reversed"},
    )
    return Figure(
        "paired-timeline",
        "Paired timeline",
        "Each request twice, on its own line: baseline (grey) and candidate (blue), from its start to its last byte, "
        "a tick at the first token, each side timed from its own first request. Queueing shows as long bars that "
        "start together and get their first token late.",
        data,
        layout,
        notes=notes,
        points=points,
    )


def figures(result: Comparison) -> list[Figure]:
    """Every chart of the page."""
    base, cand = result.requests
    names = (result.baseline.name, result.candidate.name)
    return [
        _side_boxes(
            "ttft",
            "Time to first token",
            "Per model, every paired request's TTFT on each side (box: quartiles; dots: requests).",
            lambda r: r.ttft_ms,
            base,
            cand,
            names,
            "ms",
        ),
        _side_boxes(
            "hidden-wait",
            "Hidden wait (queueing for a slot)",
            "Ollama's total minus its load, prompt-eval and eval times: mostly the wait for a free slot.",
            lambda r: r.hidden_wait_ms,
            base,
            cand,
            names,
            "ms",
        ),
        _side_boxes(
            "rate",
            "Tokens per second per stream",
            "Ollama's own generation rate of each request (the client's view when Ollama gave none).",
            lambda r: r.tokens_per_s,
            base,
            cand,
            names,
            "tokens/s",
        ),
        _side_boxes(
            "total",
            "Total time",
            "From the first request byte to the last response byte.",
            lambda r: r.total_ms,
            base,
            cand,
            names,
            "ms",
        ),
        _timeline(result),
    ]


def _table(block: dict[str, Any]) -> str:
    head = "<tr><th>metric</th><th class=num>baseline</th><th class=num>candidate</th><th class=num>change</th>"
    head += "<th class=num>noise</th></tr>"
    rows = []
    for row in model_rows(block):
        change = row.get("change", "")
        significant = change.endswith("*")
        shown = _e(change.rstrip(" *")) + (" ✱" if significant else "")
        rows.append(
            f"<tr><td>{_e(row['metric'])}</td><td class=num>{_e(row['baseline'])}</td>"
            f"<td class=num>{_e(row['candidate'])}</td>"
            f"<td class='num{' sig' if significant else ''}'>{shown}</td>"
            f"<td class=num>{_e(row.get('noise', ''))}</td></tr>"
        )
    return f"<table>{head}{''.join(rows)}</table>"


def _findings_diff(result: Comparison) -> str:
    parts = []
    for kind, word in (("resolved", "resolved"), ("new", "new"), ("kept", "kept")):
        codes = result.findings[kind]
        items = "".join(
            f'<span class="{kind}" title="{_e(result.finding_titles.get(c, ""))}"><code>{_e(c)}</code> '
            f"{_e(result.finding_titles.get(c, ''))}</span>"
            for c in codes
        )
        parts.append(f"<p class=diff><b>{word}:</b> {items or '<span class=kept>none</span>'}</p>")
    return "".join(parts)


def _outputs(result: Comparison) -> str:
    out = result.outputs
    text = (
        f"{out['deterministic']} deterministic pairs (seed and temperature 0): {out['identical']} gave identical text"
    )
    if out["other"]:
        similarity = out["length_similarity_p50"]
        text += (
            f"; {out['other']} other pairs: length similarity (shorter/longer) median "
            f"{'–' if similarity is None else f'{similarity:.2f}'}, the same done_reason in "
            f"{out['same_done_reason']} of {out['other']}"
        )
    return f"<p>{_e(text)}.</p>"


def render_compare_page(result: Comparison) -> str:
    """The whole page as one string."""
    drawn = figures(result)
    generated = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    data = {"figures": [f.to_dict() for f in drawn], "hover": [], "ids": []}
    models = "".join(f"<h3>model {_e(block['model'])}</h3>{_table(block)}" for block in result.per_model)
    timeline, boxes = drawn[-1], drawn[:-1]
    notes = "".join(f'<p class="note">{_e(n)}</p>' for n in timeline.notes)
    sections = [
        f'<section><h2>{_e(timeline.title)}</h2><p class="explain">{_e(timeline.explain)}</p>{notes}'
        f'<div class="chart" id="{timeline.id}"></div></section>',
        '<section id=distributions><h2>Distributions, side by side</h2><div class="pairs">'
        + "".join(
            f'<div><h3>{_e(f.title)}</h3><p class="explain">{_e(f.explain)}</p><div class="chart" id="{f.id}"></div>'
            "</div>"
            for f in boxes
        )
        + "</div></section>",
    ]
    title = f"ollama-wire compare · {result.baseline.name} → {result.candidate.name}"
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{_e(title)}</title>",
        f"<style>{STYLE}{EXTRA_STYLE}</style>",
        f"<script>{plotly_js()}</script>",
        "</head><body>",
        f"<header><h1>{_e(title)}</h1><p>baseline {_e(result.baseline.spec)} ({len(result.baseline.records):,} "
        f"records) · candidate {_e(result.candidate.spec)} ({len(result.candidate.records):,} records) · "
        f"{len(result.pairs):,} pairs · generated {generated}</p></header>",
        "<main>",
        f'<section id=verdict><h2>Verdict</h2><p class="verdict">{_e(result.verdict)}</p>'
        '<p class="explain">Each side measured the same way, over the paired requests only. A change is marked ✱ '
        "when it is larger than the noise of both sides together (half a 90 % bootstrap interval each).</p>"
        "</section>",
        f"<section id=findings-diff><h2>Findings</h2>{_findings_diff(result)}</section>",
        f"<section id=per-model><h2>Per model</h2>{models}<h3>Outputs</h3>{_outputs(result)}</section>",
        *sections,
        "</main><footer>ollama-wire · all data is in this file; it opens without network.</footer>",
        f'<script type="application/json" id="report-data">{_json_for_script(data)}</script>',
        f"<script>{SCRIPT}</script>",
        "</body></html>",
    ]
    return "\n".join(parts)
