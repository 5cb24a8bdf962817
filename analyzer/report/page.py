"""The report page: one self-contained HTML file (plotly.js, styles, data and script inline; no network)."""

from __future__ import annotations

import html
import json
from collections.abc import Sequence
from datetime import UTC, datetime
from functools import cache
from importlib import resources
from typing import Any

from analyzer.protocol.untrusted import clip, for_terminal
from analyzer.report.analysis import Analysis
from analyzer.report.charts import ChartBuilder, Figure
from analyzer.report.derive import Request
from analyzer.report.finding import Finding
from analyzer.report.machine import energy, energy_unit, sources_text, usd

MAX_LINKS_PER_FINDING = 20
MODEL_WIDTH = 80  # a model name in a table cell is cut here (clients choose model names)


@cache
def plotly_js() -> str:
    """The plotly.js bundle shipped with the plotly package (inlined once per page)."""
    try:
        return (resources.files("plotly") / "package_data" / "plotly.min.js").read_text(encoding="utf-8")
    except (FileNotFoundError, ModuleNotFoundError):  # another layout of the package
        from plotly.offline import get_plotlyjs

        return str(get_plotlyjs())


def _json_for_script(value: Any) -> str:
    """JSON that cannot end the <script> element it sits in."""
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    return text.replace("</", "<\\/").replace("<!--", "<\\!--")


def _e(value: object) -> str:
    """Text for the page: HTML-escaped, and control/bidi characters and newlines shown as escapes (``\x1b``,
    ``\u202e``, ``\n``), so text from traffic can neither inject markup nor reorder what is shown around it."""
    return html.escape(for_terminal(str(value)), quote=True)


def _anchor(request_id: str) -> str:
    """The evidence row's element id (the page script builds the same from a clicked mark)."""
    return "r-" + "".join(c if (c.isascii() and c.isalnum()) or c in "-_" else "_" for c in request_id)


def _n(value: float | int | None, digits: int = 0, unit: str = "") -> str:
    if value is None:
        return "–"
    text = f"{value:,.{digits}f}"
    return f"{text} {unit}".rstrip()


def _plural(n: int, word: str) -> str:
    return f"{n:,} {word}" + ("" if n == 1 else "s")


def _when(iso_time: str) -> str:
    """``2026-11-28T21:37:14.000Z`` → ``2026-11-28 21:37:14``."""
    return iso_time[:19].replace("T", " ")


def _duration(ms: float) -> str:
    seconds = ms / 1000.0
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} h"
    if seconds >= 60:
        return f"{seconds / 60:.1f} min"
    return f"{seconds:.1f} s"


STYLE = """
*{box-sizing:border-box}
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;color:#1d2330;background:#f3f4f7}
header{background:#1d2330;color:#fff;padding:18px 28px}
header h1{margin:0;font-size:22px}
header p{margin:4px 0 0;color:#c8cdd8}
main{max-width:1280px;margin:0 auto;padding:18px 28px 40px}
section{background:#fff;border-radius:8px;padding:16px 20px;margin:0 0 18px;box-shadow:0 1px 2px rgba(0,0,0,.08)}
h2{font-size:17px;margin:0 0 6px}
.explain{color:#555;margin:0 0 8px;max-width:980px}
.note{color:#8a5a00;background:#fff6e0;border-radius:4px;padding:4px 8px;margin:4px 0;display:inline-block}
.cards{display:grid;grid-template-columns:repeat(auto-fit,minmax(150px,1fr));gap:10px;margin-bottom:12px}
.card{background:#f6f7fa;border-radius:6px;padding:8px 12px}
.card b{display:block;font-size:20px}
.card span{color:#666;font-size:12px}
.card.bad b{color:#b2182b}
table{border-collapse:collapse;width:100%;font-size:13px}
th,td{text-align:left;padding:4px 8px;border-bottom:1px solid #e6e8ee;vertical-align:top}
th{background:#f6f7fa;font-weight:600}
td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}
.finding{border-left:5px solid #999;padding:8px 12px;margin:10px 0;background:#fafbfc;border-radius:0 6px 6px 0}
.finding.error{border-color:#b2182b}.finding.warning{border-color:#e08214}.finding.info{border-color:#4393c3}
.sev{font-size:11px;font-weight:700;text-transform:uppercase;padding:1px 6px;border-radius:3px;color:#fff}
.sev.error{background:#b2182b}.sev.warning{background:#e08214}.sev.info{background:#4393c3}
code{background:#eef0f4;padding:0 4px;border-radius:3px}
.finding p{margin:4px 0 4px 18px}
.finding summary{cursor:pointer;padding:2px 0}
.count{color:#666;font-size:12px;margin-left:6px}
.evidence a{margin-right:6px;font-family:ui-monospace,monospace;font-size:12px}
.ok{color:#1a7f37;font-weight:600}
.chart{width:100%}
tr:target{background:#fff3bf}
td.prompt{min-width:260px;color:#444}
td.when{white-space:nowrap}
footer{color:#777;font-size:12px;text-align:center;padding:10px}
pre.try{margin:4px 0 4px 18px;background:#eef0f4;padding:6px 10px;border-radius:4px;white-space:pre-wrap;font-size:12px}
"""

SCRIPT = """
(function(){
  var D = JSON.parse(document.getElementById('report-data').textContent);
  var config = {displaylogo:false, responsive:true, modeBarButtonsToRemove:['toImage']};
  D.figures.forEach(function(f){
    f.data.forEach(function(t){
      if (t.hoverRefs) {
        t.hovertext = t.hoverRefs.map(function(i){ return D.hover[i]; });
        t.hoverinfo = 'text';
        t.customdata = t.hoverRefs;
        delete t.hoverRefs;
      }
    });
    var el = document.getElementById(f.id);
    if (!f.points) {
      el.innerHTML = '<p class="explain">Nothing to draw: no records carry this.</p>';
      el.setAttribute('data-rendered', '0');
      return;
    }
    Plotly.newPlot(el, f.data, f.layout, config).then(function(){
      el.setAttribute('data-rendered', String(f.points));
      // clicking a request that is evidence of a finding jumps to its row in the evidence table
      el.on('plotly_click', function(ev){
        var p = ev && ev.points && ev.points[0];
        if (!p || typeof p.customdata !== 'number') return;
        var row = document.getElementById('r-' + D.ids[p.customdata].replace(/[^A-Za-z0-9_-]/g, '_'));
        if (row) location.hash = row.id;
      });
    });
  });
})();
"""


def _cards(head: dict[str, Any]) -> str:
    busiest = head.get("busiest_hour") or {}
    cards = [
        ("requests", _n(head["requests"]), ""),
        ("errors", _n(head["errors"]), "bad" if head["errors"] else ""),
        ("models", _n(len(head["models"])), ""),
        ("busiest hour (UTC)", (busiest.get("start") or "–")[11:16], ""),
        (f"requests in that hour ({(busiest.get('start') or '')[:10]})", _n(busiest.get("requests")), ""),
        ("tokens in", _n(head.get("tokens_in")), ""),
        ("tokens out", _n(head.get("tokens_out")), ""),
        ("spent loading models", _duration(head.get("load_ms") or 0.0), ""),
        (
            "hidden wait (queueing behind the same model)",
            "–" if head.get("hidden_wait_ms") is None else _duration(head["hidden_wait_ms"]),
            "",
        ),
    ]
    if head.get("sampled_requests"):
        if head.get("energy_j") is None:  # sampled without an energy source (no GPU/power meter): RSS and CPU only
            cards.append(("requests with resource samples", _n(head["sampled_requests"]), ""))
        else:
            source = sources_text(head.get("energy_sources"))
            label = f"energy ({_n(head['sampled_requests'])} sampled requests" + (f"; {source})" if source else ")")
            cards.append((label, energy(head["energy_j"]), ""))
        if head.get("joules_per_token") is not None:
            cards.append(("joules per output token", f"{head['joules_per_token']:.3g} J", ""))
    prices = head.get("prices")
    if prices is not None:
        if prices.get("kwh") is not None:
            cards.append(
                (
                    f"electricity at ${prices['kwh']:g}/kWh ({_n(head['cost_energy_requests'])} requests with energy)",
                    usd(head["cost_energy_usd"]),
                    "",
                )
            )
        if prices.get("models"):
            cards.append(
                (
                    f"on a hosted API ({_n(head['cost_api_requests'])} requests priced)",
                    usd(head["cost_api_usd"]),
                    "",
                )
            )
    return (
        '<div class="cards">'
        + "".join(f'<div class="card {cls}"><b>{_e(v)}</b><span>{_e(k)}</span></div>' for k, v, cls in cards)
        + "</div>"
    )


def _model_table(rows: Sequence[dict[str, Any]]) -> str:
    head = (
        "<tr><th>model</th><th class=num>requests</th><th class=num>errors</th><th class=num>TTFT p50</th>"
        "<th class=num>TTFT p95</th><th class=num>tokens/s p50</th><th class=num>tokens/s p95</th>"
        "<th class=num>tokens in</th><th class=num>tokens out</th></tr>"
    )
    body = "".join(
        f"<tr><td>{_e(clip(r['model'], MODEL_WIDTH))}</td><td class=num>{_n(r['requests'])}</td>"
        f"<td class=num>{_n(r['errors'])}</td>"
        f"<td class=num>{_n(r['ttft_p50_ms'], 0, 'ms')}</td><td class=num>{_n(r['ttft_p95_ms'], 0, 'ms')}</td>"
        f"<td class=num>{_n(r['tokens_per_s_p50'], 1)}</td><td class=num>{_n(r['tokens_per_s_p95'], 1)}</td>"
        f"<td class=num>{_n(r['tokens_in'])}</td><td class=num>{_n(r['tokens_out'])}</td></tr>"
        for r in rows
    )
    return f"<table>{head}{body}</table>"


def _api_table(rows: Sequence[dict[str, Any]]) -> str:
    """Per API and endpoint kind (native, OpenAI-compatible, Anthropic)."""
    if not rows:
        return ""
    head = (
        "<tr><th>API</th><th>kind</th><th class=num>requests</th><th class=num>errors</th>"
        "<th class=num>TTFT p50</th><th class=num>thinking p50</th><th class=num>with tool calls</th>"
        "<th class=num>tokens in</th><th class=num>tokens out</th></tr>"
    )
    body = "".join(
        f"<tr><td>{_e(r['api'])}</td><td>{_e(r['kind'])}</td><td class=num>{_n(r['requests'])}</td>"
        f"<td class=num>{_n(r['errors'])}</td><td class=num>{_n(r['ttft_p50_ms'], 0, 'ms')}</td>"
        f"<td class=num>{_n(r['thinking_p50_ms'], 0, 'ms')}</td><td class=num>{_n(r['tool_calls'])}</td>"
        f"<td class=num>{_n(r['tokens_in'])}</td><td class=num>{_n(r['tokens_out'])}</td></tr>"
        for r in rows
    )
    return f"<h3 id=apis>Per API</h3><table>{head}{body}</table>"


PRICES_HINT = (
    "Cost: run with --prices FILE (YAML: kwh: USD per kWh; models: {NAME: {input, output}} USD per million "
    "tokens), or set prices: in the config file, to see what this period cost in electricity and on a hosted API."
)


def _resource_table(head: dict[str, Any]) -> str:
    """Per model: the sampled requests' energy, J/token, GPU, power, memory, server CPU; with prices, the costs.
    Empty when nothing was sampled and no prices were given."""
    sampled = bool(head.get("sampled_requests"))
    priced = "prices" in head
    if not sampled and not priced:
        return f'<p class="explain">{_e(PRICES_HINT)}</p>' if head.get("requests") else ""
    columns: list[tuple[str, Any]] = []
    unit = energy_unit(max((r.get("energy_j") or 0.0 for r in head.get("per_model", [])), default=0.0))
    if sampled:
        columns += [
            ("sampled", lambda r: _n(r["sampled_requests"])),
            ("energy", lambda r: energy(r["energy_j"], unit)),
            ("J/token", lambda r: "–" if r["joules_per_token"] is None else f"{r['joules_per_token']:.3g}"),
            ("GPU util (mean)", lambda r: _n(r["gpu_util_mean_pct"], 0, "%")),
            ("power (mean)", lambda r: _n(r["power_mean_w"], 0, "W")),
            ("GPU memory (max)", lambda r: _n(r["gpu_mem_max_mb"], 0, "MB")),
            ("Ollama RSS (max)", lambda r: _n(r["server_rss_max_mb"], 0, "MB")),
            ("server CPU", lambda r: "–" if r["server_cpu_ms"] is None else _duration(r["server_cpu_ms"])),
        ]
    if priced:
        columns += [
            ("electricity", lambda r: usd(r["cost_energy_usd"])),
            ("hosted API", lambda r: usd(r["cost_api_usd"])),
        ]
    rows = head.get("per_model", [])
    table = (
        "<table><tr><th>model</th>"
        + "".join(f"<th class=num>{_e(name)}</th>" for name, _ in columns)
        + "</tr>"
        + "".join(
            f"<tr><td>{_e(clip(r['model'], MODEL_WIDTH))}</td>"
            + "".join(f"<td class=num>{_e(cell(r))}</td>" for _, cell in columns)
            + "</tr>"
            for r in rows
        )
        + "</table>"
    )
    explain = (
        "Energy and J/token: the sampled requests' own shares (concurrent requests split the energy by the tokens "
        "each generated); GPU and power: the whole device's mean over the requests, weighted by their duration. "
        + (f"Energy from: {sources_text(head.get('energy_sources'))}. " if head.get("energy_sources") else "")
        + (f"GPU memory from: {sources_text(head.get('gpu_mem_sources'))}. " if head.get("gpu_mem_sources") else "")
        if sampled
        else ""
    )
    if priced:
        explain += (
            "Costs are derived now from the prices given, never stored: electricity is energy_j at the kWh price "
            "(only requests with energy), the hosted API the tokens at each model's price per million tokens "
            "(models the prices name)."
        )
    hint = "" if priced else f'<p class="explain">{_e(PRICES_HINT)}</p>'
    return (
        f"<h3 id=resources>Resources{' and cost' if priced else ''} per model</h3>"
        f'<p class="explain">{_e(explain)}</p>{table}{hint}'
    )


def _finding_html(finding: Finding, evidence_rows: set[str]) -> str:
    links = []
    for request_id in finding.ids[:MAX_LINKS_PER_FINDING]:
        target = f' href="#{_anchor(request_id)}"' if request_id in evidence_rows else ""
        links.append(f"<a{target}>{_e(request_id)}</a>")
    more = len(finding.ids) - MAX_LINKS_PER_FINDING
    if more > 0:
        links.append(f"<span>… and {more:,} more (all in <code>report --json</code>)</span>")
    first, last = _when(finding.first), _when(finding.last)
    when = first if first == last else f"{first} – {last[11:] if first[:10] == last[:10] else last}"
    opened = " open" if finding.severity == "error" else ""
    return (
        f'<details class="finding {finding.severity}" id="finding-{_e(finding.code)}"{opened}>'
        f'<summary><span class="sev {finding.severity}">{finding.severity}</span> <code>{_e(finding.code)}</code> '
        f'<b>{_e(finding.title)}</b> <span class="count">{_plural(len(finding.ids), "request")} · {_e(when)} UTC</span>'
        "</summary>"
        f"<p>{_e(finding.detail)}</p>"
        f"<p><b>What to change:</b> {_e(finding.suggestion)}</p>"
        + (
            "<p><b>Try it on this traffic</b> (replay the period against the changed server, then compare):</p>"
            f'<pre class="try">{_e(chr(10).join(finding.try_commands))}</pre>'
            if finding.try_commands
            else ""
        )
        + f'<p class="evidence"><b>Evidence:</b> {"".join(links)}</p>'
        "</details>"
    )


def _evidence_table(requests: Sequence[Request], codes: dict[str, list[str]]) -> str:
    head = (
        "<tr><th>request</th><th>started (UTC)</th><th>model</th><th>findings</th><th class=num>status</th>"
        "<th class=num>TTFT</th><th class=num>total</th><th class=num>load</th><th class=num>wait</th>"
        "<th class=num>prompt eval</th><th class=num>gen</th><th class=num>overhead</th><th>flags</th>"
        "<th>prompt</th></tr>"
    )
    rows = []
    for r in requests:
        rows.append(
            f'<tr id="{_anchor(r.id)}"><td><code>{_e(r.id)}</code></td><td class=when>{_e(_when(r.started_at))}</td>'
            f"<td>{_e(clip(r.model or '', MODEL_WIDTH))}</td><td>{_e(', '.join(codes.get(r.id, [])))}</td>"
            f"<td class=num>{_e(r.status or '–')}</td><td class=num>{_n(r.ttft_ms)}</td>"
            f"<td class=num>{_n(r.total_ms)}</td><td class=num>{_n(r.load_ms)}</td>"
            f"<td class=num>{_n(r.hidden_wait_ms)}</td><td class=num>{_n(r.prompt_eval_ms)}</td>"
            f"<td class=num>{_n(r.eval_ms)}</td><td class=num>{_n(r.wire_overhead_ms)}</td>"
            f"<td>{_e(' '.join(r.flags))}</td><td class=prompt>{_e(r.prompt)}</td></tr>"
        )
    return f"<table>{head}{''.join(rows)}</table>"


def _figure_section(figure: Figure) -> str:
    notes = "".join(f'<p class="note">{_e(n)}</p>' for n in figure.notes)
    return (
        f'<section><h2>{_e(figure.title)}</h2><p class="explain">{_e(figure.explain)}</p>{notes}'
        f'<div class="chart" id="{figure.id}"></div></section>'
    )


def render_page(analysis: Analysis, sources: Sequence[str] = (), title: str = "ollama-wire report") -> str:
    """The whole page as one string."""
    head = analysis.headline
    builder = ChartBuilder(analysis)
    figures = builder.figures()
    codes: dict[str, list[str]] = {}
    for finding in analysis.findings:
        for request_id in finding.ids:
            codes.setdefault(request_id, []).append(finding.code)
    linked = {i for f in analysis.findings for i in f.ids[:MAX_LINKS_PER_FINDING]}
    evidence = [r for r in analysis.requests if r.id in linked]
    evidence_ids = {r.id for r in evidence}
    if analysis.findings:
        findings_html = "".join(_finding_html(f, evidence_ids) for f in analysis.findings)
    else:
        findings_html = '<p class="ok">No findings: nothing in these records looks wrong.</p>'
    span = f"{_when(head['first'])} – {_when(head['last'])} UTC" if head["requests"] else "nothing recorded"
    generated = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    failed = sum(1 for r in analysis.requests if r.category)
    evidence_note = (
        f'<p class="note">The first {MAX_LINKS_PER_FINDING} evidence requests of each finding are listed '
        f"({len(evidence):,} of {len(codes):,}); <code>report --json</code> has them all.</p>"
        if len(evidence) < len(codes)
        else ""
    )
    skipped = (
        f'<p class="note">{analysis.skipped:,} records without a readable start time were left out.</p>'
        if analysis.skipped
        else ""
    )
    data = {
        "figures": [f.to_dict() for f in figures] if analysis.requests else [],
        "hover": builder.hover,
        "ids": [r.id for r in builder.drawn],
    }
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{_e(title)} · {_e(span)}</title>",
        f"<style>{STYLE}</style>",
        f"<script>{plotly_js()}</script>",
        "</head><body>",
        f"<header><h1>{_e(title)}</h1><p>{_e(span)} · {head['requests']:,} requests · "
        f"{failed:,} failed · sources: {_e(', '.join(sources) or '–')} · generated {generated}</p></header>",
        "<main>",
        f"<section id=headline><h2>Headline</h2>{skipped}{_cards(head)}{_model_table(head.get('per_model', []))}"
        f"{_api_table(head.get('per_api', []))}{_resource_table(head)}</section>",
        f'<section id=findings><h2>Findings ({len(analysis.findings)})</h2><p class="explain">What went wrong and '
        "what to change (click one to open it); each links to the requests that show it (listed at the bottom; "
        "clicking such a request in a chart jumps there too).</p>"
        f"{findings_html}</section>",
        *(_figure_section(f) for f in figures if analysis.requests),
        ""
        if analysis.requests
        else "<section><h2>No requests</h2><p>No record matches the sources and filters: "
        "nothing to chart.</p></section>",
        f"<section id=evidence><h2>Evidence requests</h2>{evidence_note}"
        + (_evidence_table(evidence, codes) if evidence else "<p>No finding, no evidence.</p>")
        + "</section>",
        "</main><footer>ollama-wire · all data is in this file; it opens without network.</footer>",
        f'<script type="application/json" id="report-data">{_json_for_script(data)}</script>',
        f"<script>{SCRIPT}</script>",
        "</body></html>",
    ]
    return "\n".join(parts)
