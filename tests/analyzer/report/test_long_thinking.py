"""``long_thinking`` on constructed records: a model that thinks for most of each request gets exactly one
finding naming exactly those requests; the look-alikes — thinking that is a small share, too few requests, short
thinking, non-streamed bodies — stay silent. Also the breakdown's thinking segment and the per-API table."""

from __future__ import annotations

from typing import Any

from report_records import clean_night, rec

from analyzer.protocol.record import InteractionRecord
from analyzer.report import analyze
from analyzer.report.charts import ChartBuilder
from analyzer.report.thinking import LONG_THINKING_MIN_MS, LONG_THINKING_MIN_REQUESTS, LONG_THINKING_SHARE


def thinker(
    rid: str, second: float, thinking_ms: float | None, total_ms: float, model: str = "qwen3:8b", **extra: Any
) -> InteractionRecord:
    """A streamed chat of a thinking model: thinks from 80 ms for ``thinking_ms``, then answers."""
    fields: dict[str, Any] = {
        "kind": "chat",
        "path": "/api/chat",
        "total_duration_ms": total_ms - 10,
        "eval_duration_ms": total_ms - 90,
        **extra,
    }
    return rec(
        rid,
        second,
        model=model,
        thinking_text="Let me think.",
        ttft_ms=80.0,
        ttft_thinking_ms=80.0,
        ttft_content_ms=80.0 + (thinking_ms or 0.0),
        thinking_ms=thinking_ms,
        total_ms=total_ms,
        opt_think="true",
        **fields,
    )


def codes(records: list[InteractionRecord]) -> dict[str, list[str]]:
    return {f.code: f.ids for f in analyze(records).findings}


def test_a_model_thinking_most_of_the_time_is_found() -> None:
    thinkers = [thinker(f"t{i}", 100 + i * 20, 6000.0, 8000.0) for i in range(4)]
    thinkers.append(thinker("short", 200, 1000.0, 8000.0))  # same model, thought briefly: not evidence
    found = analyze([*clean_night(), *thinkers]).findings
    assert [f.code for f in found] == ["long_thinking"]
    finding = found[0]
    assert finding.ids == ["t0", "t1", "t2", "t3"]
    assert finding.numbers["median_thinking_share"] == 0.75 and finding.numbers["requests"] == 5
    assert finding.numbers["think"] == {"true": 5}
    assert "think" in finding.suggestion and "qwen3:8b" in finding.title


def test_look_alikes_stay_silent() -> None:
    share = LONG_THINKING_SHARE
    small_share = [thinker(f"s{i}", 100 + i * 20, 3000.0, 3000.0 / (share - 0.1)) for i in range(5)]
    too_few = [
        thinker(f"f{i}", 300 + i * 20, 6000.0, 8000.0, model="rare") for i in range(LONG_THINKING_MIN_REQUESTS - 1)
    ]
    ms = LONG_THINKING_MIN_MS
    brief = [thinker(f"b{i}", 500 + i * 20, ms - 100, ms, model="tiny-thinker") for i in range(5)]
    # a non-streamed body arrives at once: thinking_ms is unknown (None), never evidence
    whole = [thinker(f"w{i}", 700 + i * 20, None, 8000.0, model="whole", stream=False) for i in range(5)]
    assert codes([*clean_night(), *small_share, *too_few, *brief, *whole]) == {}


def test_breakdown_shows_thinking_as_its_own_segment() -> None:
    analysis = analyze([thinker("t", 10, 6000.0, 8000.0), rec("plain", 30)])
    breakdown = next(f for f in ChartBuilder(analysis).figures() if f.id == "breakdown")
    traces = {trace["name"]: trace["y"] for trace in breakdown.data}
    thinking = next(name for name in traces if name.startswith("thinking"))
    generation = next(name for name in traces if name.startswith("generation"))
    assert traces[thinking] == [6000.0, 0.0]
    assert traces[generation] == [8000.0 - 90 - 6000.0, 505.0]


def test_per_api_rows() -> None:
    records = [
        rec("n", 0),
        thinker("a1", 10, 500.0, 900.0, api="anthropic", kind="messages", path="/v1/messages", tool_calls=[{"x": 1}]),
        thinker("a2", 20, 700.0, 900.0, api="anthropic", kind="messages", path="/v1/messages"),
        rec("l", 30, kind="load", response_text="", eval_count=None, ttft_ms=None),
    ]
    rows = {(r["api"], r["kind"]): r for r in analyze(records).headline["per_api"]}
    assert set(rows) == {("ollama", "generate"), ("anthropic", "messages"), ("ollama", "load")}
    anthropic = rows[("anthropic", "messages")]
    assert (anthropic["requests"], anthropic["thinking_p50_ms"], anthropic["tool_calls"]) == (2, 600.0, 1)
    assert rows[("ollama", "load")]["ttft_p50_ms"] is None


def test_breakdown_draws_compatible_api_streams_from_the_wire() -> None:
    anthropic = thinker(
        "a", 10, 900.0, 2000.0, api="anthropic", kind="messages", total_duration_ms=None, eval_duration_ms=None
    )
    whole = thinker("w", 20, None, 2000.0, api="openai", kind="responses", stream=False, total_duration_ms=None)
    analysis = analyze([anthropic, whole])
    breakdown = next(f for f in ChartBuilder(analysis).figures() if f.id == "breakdown")
    traces = {trace["name"].split(" ")[0]: trace["y"] for trace in breakdown.data}
    assert (traces["to"], traces["thinking"], traces["generation"], traces["load"]) == (
        [80.0],
        [900.0],
        [2000.0 - 80 - 900],
        [0.0],
    )
    assert any("1 stream carries no Ollama durations" in note for note in breakdown.notes)
    assert any("1 request carries no durations" in note for note in breakdown.notes)


def test_remote_models_are_not_the_local_schedulers_and_compat_chats_are() -> None:
    def switching(remote: bool | None, kind: str) -> list[InteractionRecord]:
        return [
            rec(f"sw{i}", i * 10.0, model=f"big-{'ab'[i % 2]}", kind=kind, remote=remote, load_duration_ms=3000.0)
            for i in range(4)
        ]

    # Anthropic messages switching between local models thrash like chats do
    assert codes(switching(False, "messages"))["model_thrash"] == ["sw2", "sw3"]  # sw0, sw1: first loads
    # the same switches answered by remote (cloud) models are not the local machine's: no model_thrash
    assert "model_thrash" not in codes(switching(True, "chat"))
