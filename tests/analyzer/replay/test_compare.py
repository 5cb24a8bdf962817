"""compare: pairing, the verdict (silent when nothing changed beyond noise), outputs, and the page in headless
Chromium (every chart drawn with exactly its points, no console message; a screenshot kept as an artefact)."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections import defaultdict
from html.parser import HTMLParser
from pathlib import Path

import pytest

from analyzer.protocol.record import InteractionRecord
from analyzer.replay.compare import Side, compare, deterministic
from analyzer.replay.compare_page import figures, render_compare_page
from analyzer.replay.compare_text import render_comparison

ROOT = Path(__file__).resolve().parents[3]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
OFFLINE = ["--proxy-server=127.0.0.1:9", "--host-resolver-rules=MAP * ~NOTFOUND"]


def rec(
    n: int, *, wait_ms: float = 0.0, load_ms: float = 20.0, source: str = "proxy", **fields: object
) -> InteractionRecord:
    """A chat of model m:1 started n × 0.1 s after 10:00; ``wait_ms`` of hidden wait, overlapping its neighbours."""
    prompt_ms, eval_ms = 30.0, 400.0 + 7 * (n % 5)
    total = load_ms + wait_ms + prompt_ms + eval_ms
    base: dict[str, object] = {
        "id": f"{source}-{n}",
        "source": source,
        "started_at": f"2026-12-01T10:00:{n // 10:02d}.{n % 10}00000Z",
        "method": "POST",
        "path": "/api/chat",
        "status": 200,
        "api": "ollama",
        "kind": "chat",
        "model": "m:1",
        "response_text": f"answer {n}",
        "done_reason": "stop",
        "complete": True,
        "ttft_ms": load_ms + wait_ms + prompt_ms + 2.0 + (n % 3),
        "total_ms": total + 3.0,
        "prompt_eval_count": 12,
        "eval_count": 40,
        "total_duration_ms": total,
        "load_duration_ms": load_ms,
        "prompt_eval_duration_ms": prompt_ms,
        "eval_duration_ms": eval_ms,
        "eval_tokens_per_s": 40 / eval_ms * 1000,
        "request_body": '{"model":"m:1","messages":[],"options":{"seed":3,"temperature":0}}',
    }
    base.update(fields)
    return InteractionRecord(**base)  # type: ignore[arg-type]


def replayed(original: InteractionRecord, label: str, **fields: object) -> InteractionRecord:
    n = int(original.id.rsplit("-", 1)[1])
    return rec(n, source="replay", replay_of=original.id, replay_label=label, id=f"{label}-{n}", **fields)


def queued_night() -> tuple[Side, Side, Side]:
    """Baseline: 30 overlapping requests queueing (growing hidden wait); a fix without queueing; a no-op replay."""
    originals = [rec(n, wait_ms=600.0 + 40 * n) for n in range(30)]
    fixed = [replayed(r, "fixed", wait_ms=5.0) for r in originals]
    same = [replayed(r, "same", wait_ms=600.0 + 40 * n) for n, r in enumerate(originals)]
    return Side("log", "log", originals), Side("label:fixed", "fixed", fixed), Side("label:same", "same", same)


def test_a_fix_is_named_with_its_numbers() -> None:
    baseline, fixed, _ = queued_night()
    result = compare(baseline, fixed)
    assert len(result.pairs) == 30
    assert result.findings == {"resolved": ["queueing"], "new": [], "kept": []}
    assert result.verdict.startswith("log → fixed: queueing gone (hidden wait p95 1.7 s → 5 ms), TTFT p95 1.8 s → ")
    (block,) = result.per_model
    assert block["change"]["hidden_wait_p95_ms"]["significant"]
    assert not block["change"]["tokens_per_s_p50"]["significant"]  # the same rates on both sides
    assert result.outputs["deterministic"] == 30 and result.outputs["identical"] == 30
    text = render_comparison(result)
    assert text.splitlines()[0] == result.verdict and "resolved queueing" in text


def test_the_same_run_twice_is_no_change() -> None:
    baseline, _, same = queued_night()
    result = compare(baseline, same)
    assert result.findings == {"resolved": [], "new": [], "kept": ["queueing"]}
    assert result.verdict.startswith("log → same: no change beyond noise over 30 paired requests (TTFT p95 ")
    assert not any(c["significant"] for c in result.per_model[0]["change"].values())


def test_two_replays_of_one_log_pair_through_their_original() -> None:
    _, fixed, same = queued_night()
    result = compare(same, fixed)
    assert len(result.pairs) == 30 and result.findings["resolved"] == ["queueing"]


def test_deterministic_means_seed_and_temperature_zero() -> None:
    assert deterministic(rec(1))
    assert not deterministic(rec(1, request_body='{"model":"m","options":{"temperature":0}}'))
    assert not deterministic(rec(1, request_body='{"model":"m","seed":1,"temperature":0.7}'))
    assert deterministic(rec(1, request_body='{"model":"m","seed":1,"temperature":0}'))  # OpenAI's top level
    differs = [replayed(r, "x", response_text="something else") for r in queued_night()[0].records[:3]]
    result = compare(queued_night()[0], Side("label:x", "x", differs))
    assert result.outputs["identical"] == 0 and len(result.outputs["differing_ids"]) == 3


class Charts(HTMLParser):
    """Per chart div: its attributes and the classes of the elements inside it."""

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str | None] = []
        self.attrs: dict[str, dict[str, str | None]] = {}
        self.counts: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        classes = (values.get("class") or "").split()
        chart = values.get("id") if tag == "div" and "chart" in classes else None
        if chart:
            self.attrs[chart] = values
        current = chart or (self.stack[-1] if self.stack else None)
        self.stack.append(current)
        if current:
            for name in classes:
                self.counts[current][name] += 1

    def handle_endtag(self, tag: str) -> None:
        if self.stack:
            self.stack.pop()


@pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium (apt-get install chromium)")
def test_the_page_renders_offline_with_every_chart(tmp_path: Path) -> None:
    baseline, fixed, _ = queued_night()
    result = compare(baseline, fixed)
    page = tmp_path / "compare.html"
    page.write_text(render_compare_page(result), encoding="utf-8")
    artefacts = Path(os.environ.get("OLLAMA_WIRE_TEST_ARTEFACTS") or ROOT / "build" / "test-artefacts")
    artefacts.mkdir(parents=True, exist_ok=True)
    shot = artefacts / "compare-page.png"
    shot.unlink(missing_ok=True)
    done = subprocess.run(
        [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--enable-logging=stderr",
         "--v=0", *OFFLINE, "--virtual-time-budget=15000", "--window-size=1300,2300", "--hide-scrollbars",
         f"--screenshot={shot}", "--dump-dom", page.as_uri()],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert [line for line in done.stderr.splitlines() if ":CONSOLE" in line] == []
    charts = Charts()
    charts.feed(done.stdout)
    for figure in figures(result):
        assert charts.attrs[figure.id].get("data-rendered") == str(figure.points), figure.id
    # every request is a box point on each side, twice in the timeline (a bar and its first-token tick)
    for name in ("ttft", "hidden-wait", "rate", "total"):
        assert charts.counts[name]["point"] == 60, (name, dict(charts.counts[name]))
    assert charts.counts["paired-timeline"]["point"] == 60
    assert shot.stat().st_size > 50_000
    html = page.read_text(encoding="utf-8")
    assert result.verdict.replace("→", "→") in html and 'class="resolved"' in html


def test_traffic_text_is_escaped_on_the_page_and_in_the_terminal() -> None:
    hostile = "<script>alert(1)</script>\x1b[31m"
    originals = [rec(n, model=hostile) for n in range(3)]
    result = compare(
        Side("log", "log", originals), Side("label:x", "x", [replayed(r, "x", model=hostile) for r in originals])
    )
    page = render_compare_page(result)
    # shown escaped in the tables; in the charts' JSON it cannot end the script element it sits in
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert page.count("</script>") == 3  # plotly.js, the data, the page's script
    assert "\x1b" not in render_comparison(result)
