"""What the charts draw when there is too much to draw: sampling spread over the period, the busiest hour in
full, aggregates instead of bars, exact box statistics."""

from __future__ import annotations

from report_records import rec

from analyzer.report import analyze
from analyzer.report.charts import MAX_DRAWN_REQUESTS, ChartBuilder, choose_drawn


def test_sampling_spreads_over_the_whole_period() -> None:
    analysis = analyze([rec(f"r{i}", i * 10.0, done_reason="length" if i % 2 else "stop") for i in range(12000)])
    requests = analysis.requests
    evidence = {r.id for r in requests if r.done_reason == "length"}
    drawn = choose_drawn(requests, evidence, 1000)
    assert len(drawn) == 1000
    assert sum(1 for r in drawn if r.id in evidence) == 500  # evidence gets at most half when it is too much
    period = requests[-1].start - requests[0].start
    assert drawn[0].start - requests[0].start < period / 100 and requests[-1].start - drawn[-1].start < period / 100
    few = choose_drawn(requests, {"r7", "r11999"}, 1000)
    assert {"r7", "r11999"} <= {r.id for r in few}


def test_a_long_period_opens_the_timeline_on_its_busiest_hour() -> None:
    quiet = [rec(f"q{i}", i * 600.0) for i in range(200)]  # one request per 10 minutes for 33 hours
    rush = [rec(f"rush{i}", 50_000 + i * 2.0) for i in range(1000)]  # 1,000 in half an hour
    many = [rec(f"bulk{i}", i * 21.0) for i in range(MAX_DRAWN_REQUESTS)]  # spread over 29 hours
    analysis = analyze(quiet + rush + many)
    builder = ChartBuilder(analysis)
    drawn = {r.id for r in builder.drawn}
    assert len(builder.drawn) <= MAX_DRAWN_REQUESTS
    busiest = analysis.headline["busiest_hour"]
    timeline = next(f for f in builder.figures() if f.id == "timeline")
    start, end = timeline.layout["xaxis"]["range"]
    assert end - start == 3600_000
    in_focus = [r for r in analysis.requests if start / 1000 <= r.start < end / 1000]
    assert len(in_focus) == busiest["requests"] and all(r.id in drawn for r in in_focus)
    assert any("busiest hour" in note for note in timeline.notes)


def test_boxes_use_every_request() -> None:
    records = [rec(f"r{i}", i, ttft_ms=float(i + 1)) for i in range(9000)]
    builder = ChartBuilder(analyze(records))
    ttft = next(f for f in builder.figures() if f.id == "ttft")
    wire = next(t for t in ttft.data if t["name"] == "TTFT on the wire")
    assert wire["median"] == [4500.5] and wire["lowerfence"] == [450.95] and wire["upperfence"] == [8550.05]


def test_ten_thousand_model_names_give_the_busiest_rows_and_one_for_the_others() -> None:
    from analyzer.report.headline import MODELS_SHOWN

    busy = [rec(f"b{i}", i * 1.0, model="busy") for i in range(5)]
    flood = [rec(f"f{i}", 10 + i * 0.5, model=f"m{i}\x1b]0;x\x07<b>") for i in range(10_000)]
    analysis = analyze(busy + flood)
    rows = analysis.headline["per_model"]
    assert len(rows) == MODELS_SHOWN + 1 and rows[0]["model"] == "busy"
    others = rows[-1]
    assert (
        others["model"] == f"({10_000 - MODELS_SHOWN + 1:,} other models)"
        and others["others"] == 10_000 - MODELS_SHOWN + 1
    )
    assert sum(row["requests"] for row in rows) == 10_005  # nothing lost
    builder = ChartBuilder(analysis)
    names = {trace["name"] for figure in builder.figures() for trace in figure.data if "name" in trace}
    assert len([n for n in names if n.startswith("m")]) <= MODELS_SHOWN  # one series for the others
    assert not [n for n in names if "\x1b" in n or "<b>" in n]  # escaped: plotly renders <b> in names
