"""The report page in a real browser: headless Chromium opens it from file:// with networking disabled, runs its
scripts, and the rendered DOM must hold every chart with exactly the data points the report meant to draw, with
no console message at all. A screenshot is kept as a test artefact (build/test-artefacts/, or
$OLLAMA_WIRE_TEST_ARTEFACTS)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections import Counter, defaultdict
from html.parser import HTMLParser
from pathlib import Path

import pytest
from report_records import rec, troubled_night, with_resources

from analyzer.report import analyze
from analyzer.report.charts import MAX_DRAWN_REQUESTS, NO_RESOURCES_NOTE, ChartBuilder
from analyzer.report.page import render_page

ROOT = Path(__file__).resolve().parents[3]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium (apt-get install chromium)")

# No network at all: every host resolves to nothing and any proxied request goes to a closed port.
OFFLINE = ["--proxy-server=127.0.0.1:9", "--host-resolver-rules=MAP * ~NOTFOUND"]


def chromium(*args: str, timeout_s: float = 120.0) -> subprocess.CompletedProcess[str]:
    command = [
        str(CHROMIUM),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--enable-logging=stderr",
        "--v=0",
        *OFFLINE,
        *args,
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout_s, check=False)


class ChartCounter(HTMLParser):
    """Per chart div (class "chart"): its attributes and how many elements carry each class inside it."""

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[tuple[str, str | None, str | None]] = []  # (tag, chart, plotly subplot)
        self.counts: dict[str, Counter[str]] = defaultdict(Counter)
        self.subplots: dict[tuple[str, str], Counter[str]] = defaultdict(Counter)  # (chart, "xy2") → classes
        self.attrs: dict[str, dict[str, str | None]] = {}
        self.texts: dict[str, list[str]] = defaultdict(list)
        self.body: dict[str, str | None] = {}
        self.in_hover = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag == "body":
            self.body = values
        classes = (values.get("class") or "").split()
        chart = values.get("id") if tag == "div" and "chart" in classes else None
        if chart:
            self.attrs[chart] = values
        current = chart or (self.stack[-1][1] if self.stack else None)
        subplot = self.stack[-1][2] if self.stack else None
        if tag == "g" and "subplot" in classes:  # plotly's cartesian subplot group: class "subplot xy2"
            subplot = next((c for c in classes if c != "subplot"), None)
        self.stack.append((tag, current, subplot))
        if current:
            self.counts[current].update(classes)
            if subplot:
                self.subplots[(current, subplot)].update(classes)
            if "hovertext" in classes:
                self.in_hover = len(self.stack)

    def handle_endtag(self, tag: str) -> None:
        for i in range(len(self.stack) - 1, -1, -1):
            if self.stack[i][0] == tag:
                del self.stack[i:]
                if len(self.stack) < self.in_hover:
                    self.in_hover = 0
                return

    def handle_data(self, data: str) -> None:
        if self.in_hover and self.stack and self.stack[-1][1]:
            self.texts[f"{self.stack[-1][1]}-hover"].append(data)
        elif self.stack and self.stack[-1][1] and self.stack[-1][0] == "text":
            self.texts[f"{self.stack[-1][1]}-titles"].append(data + "|")

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)
        self.handle_endtag(tag)


# Appended to a copy of the page: once the timeline has drawn, hover its first bar the way a mouse would
# (plotly's own Fx.hover) so the hover label lands in the DOM, and (CLICK) click the request "queue1" (plotly's
# click event with that mark's data) so the page jumps to its evidence row; the hash is left on <body>.
CLICK = """
  var ids = JSON.parse(document.getElementById('report-data').textContent).ids;
  el.emit('plotly_click', {points: [{customdata: ids.indexOf('queue1')}]});
  document.body.setAttribute('data-hash', location.hash);"""


def probe(click: bool = True) -> str:
    return (
        """<script>
(function probe(tries) {
  var el = document.getElementById('timeline');
  if (!el.getAttribute('data-rendered')) { if (tries > 0) setTimeout(function(){ probe(tries - 1); }, 50); return; }
  Plotly.Fx.hover(el, [{curveNumber: 0, pointNumber: 0}]);"""
        + (CLICK if click else "")
        + """
})(200);
</script>"""
    )


def console_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if ":CONSOLE" in line]


def artefact_dir() -> Path:
    path = Path(os.environ.get("OLLAMA_WIRE_TEST_ARTEFACTS") or ROOT / "build" / "test-artefacts")
    path.mkdir(parents=True, exist_ok=True)
    return path


def render_in_browser(
    page: Path, budget_ms: int, *extra: str, window: str = "1300,5400"
) -> tuple[ChartCounter, list[str]]:
    """Open ``page``, let its scripts run, and parse the DOM Chromium ends with (``extra``: e.g. a screenshot)."""
    result = chromium(
        f"--virtual-time-budget={budget_ms}", f"--window-size={window}", "--hide-scrollbars", *extra, "--dump-dom",
        page.as_uri(),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    counter = ChartCounter()
    counter.feed(result.stdout)
    return counter, console_lines(result.stderr)


def check_every_chart(
    page: Path, builder: ChartBuilder, budget_ms: int, *extra: str, window: str = "1300,5400"
) -> ChartCounter:
    counter, console = render_in_browser(page, budget_ms, *extra, window=window)
    assert console == [], "the page logged to the console:\n" + "\n".join(console)
    for figure in builder.figures():
        attrs, counts = counter.attrs.get(figure.id), counter.counts[figure.id]
        assert attrs is not None, f"chart {figure.id} is missing"
        assert attrs.get("data-rendered") == str(figure.points), f"{figure.id} did not finish drawing"
        assert counts["main-svg"] >= 1 or figure.points == 0, f"{figure.id} has no plotly SVG"
        # bars and markers are plotly "point" elements, boxes "box" paths: exactly what was meant to be drawn
        assert counts["point"] + counts["box"] == figure.points, (figure.id, counts["point"], counts["box"])
    return counter


def test_the_report_renders_offline_with_every_chart(tmp_path: Path) -> None:
    analysis = analyze(troubled_night())
    page = tmp_path / "report.html"
    page.write_text(render_page(analysis, sources=["constructed night"]), encoding="utf-8")
    probed = tmp_path / "report-hover.html"
    probed.write_text(page.read_text(encoding="utf-8").replace("</body>", probe() + "</body>"), encoding="utf-8")
    shot = artefact_dir() / "report-page.png"
    shot.unlink(missing_ok=True)
    counter = check_every_chart(probed, ChartBuilder(analysis), 20000, f"--screenshot={shot}")
    assert shot.stat().st_size > 50_000, "the screenshot should show the page"
    # hovering a request shows its model, prompt preview and timings
    first = next(r for r in analysis.requests if r.model == analysis.requests[0].model)
    hover = " ".join(counter.texts["timeline-hover"])
    assert first.model in hover and first.prompt[:30] in hover and "TTFT" in hover and "load" in hover, hover
    assert counter.body.get("data-hash") == "#r-queue1"
    # one bar and one first-token tick per request that had a first token
    timeline = next(f for f in ChartBuilder(analysis).figures() if f.id == "timeline")
    with_ttft = sum(1 for r in analysis.requests if r.first_token is not None)
    assert timeline.points == len(analysis.requests) + with_ttft == counter.counts["timeline"]["point"]
    # the findings and their evidence links are on the page
    html = page.read_text(encoding="utf-8")
    for finding in analysis.findings:
        assert f'id="finding-{finding.code}"' in html
    assert re.search(r'href="#r-queue1"', html) and 'id="r-queue1"' in html
    # no record has resource columns: no tracks, one line saying how to get them
    assert NO_RESOURCES_NOTE in html and set(timeline.parts) == set()
    assert {s for c, s in counter.subplots if c == "timeline"} == {"xy"}


# Shown in the resource test's copy of the page: the timeline and its tracks at the top of the screenshot (the
# window is one screen high; the charts below it are drawn and counted all the same).
TRACKS_FIRST = "<style>#headline,#findings{display:none}</style></head>"


def test_resource_tracks_render_under_the_timeline(tmp_path: Path) -> None:
    records = with_resources(troubled_night(), every=2)
    analysis = analyze(records)
    builder = ChartBuilder(analysis)
    timeline = next(f for f in builder.figures() if f.id == "timeline")
    # one column per sampled request in each track, independent of how the chart code counts them
    sampled = [r for r in records if r.gpu_util_mean_pct is not None]
    assert len(sampled) > 100
    expected = {"xy": len(analysis.requests) + sum(1 for r in analysis.requests if r.first_token is not None)}
    expected.update({f"xy{i}": len(sampled) for i in range(2, 8)})  # GPU %, W, GPU MB, RSS MB, CPU cores, J/token
    assert timeline.parts == expected
    text = render_page(analysis, sources=["constructed night with resources"])
    assert NO_RESOURCES_NOTE not in text
    page = tmp_path / "resources.html"
    hover = probe(click=False)  # no jump to the evidence: the screenshot keeps the top of the page
    page.write_text(text.replace("</head>", TRACKS_FIRST, 1).replace("</body>", hover + "</body>"), "utf-8")
    shot = artefact_dir() / "report-page-resources.png"
    shot.unlink(missing_ok=True)
    counter = check_every_chart(page, builder, 20000, f"--screenshot={shot}", window="1300,1250")
    assert shot.stat().st_size > 50_000
    for subplot, points in expected.items():  # the bars plotly drew in each track (and the timeline above)
        assert counter.subplots[("timeline", subplot)]["point"] == points, subplot
    titles = "".join(counter.texts.get("timeline-titles", []))
    for title in ("GPU %", "power W", "GPU mem MB", "RSS MB", "CPU cores", "J/token"):
        assert title in titles, (title, titles)
    # hovering a request shows what the machine did during it
    label = " ".join(counter.texts["timeline-hover"])
    first = analysis.requests[0]
    assert first.gpu_util_mean_pct is not None and f"GPU {first.gpu_util_mean_pct:.0f}%" in label, label
    assert "J/token" in label and "RSS" in label, label
    # the per-model energy summary
    assert "Resources per model" in text and "J/token" in text


def test_a_big_night_is_sampled_and_says_so(tmp_path: Path) -> None:
    n = MAX_DRAWN_REQUESTS + 1500
    records = [rec(f"r{i}", i * 1.5, model=("llama3.2", "qwen2.5")[i % 2]) for i in range(n)]
    records[4321] = rec("r4321", 4321 * 1.5, done_reason="length")  # evidence is always drawn
    analysis = analyze(with_resources(records))
    builder = ChartBuilder(analysis)
    assert len(builder.drawn) == MAX_DRAWN_REQUESTS and "r4321" in {r.id for r in builder.drawn}
    # the resource tracks draw the timeline's sample, not every request
    timeline = builder.timeline()
    assert timeline.parts == {"xy": 2 * MAX_DRAWN_REQUESTS, **{f"xy{i}": MAX_DRAWN_REQUESTS for i in range(2, 8)}}
    page = tmp_path / "big.html"
    text = render_page(analysis)
    page.write_text(text, encoding="utf-8")
    assert f"Drawn: {MAX_DRAWN_REQUESTS:,} of {n:,} requests" in text
    assert "too many to draw one bar each" in text
    assert len(text) < 12_000_000, "the page should stay a reasonable size"
    counter = check_every_chart(page, builder, 60000, f"--screenshot={artefact_dir() / 'report-page-big.png'}")
    for subplot, points in timeline.parts.items():
        assert counter.subplots[("timeline", subplot)]["point"] == points, subplot
