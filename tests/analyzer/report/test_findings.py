"""The findings engine on constructed records: each trouble gives exactly its code with exactly its ids, and a
clean night gives nothing."""

from __future__ import annotations

import pytest
from report_records import clean_night, rec

from analyzer.protocol.record import InteractionRecord
from analyzer.report import analyze
from analyzer.report.derive import hidden_wait_ms, to_request, wire_overhead_ms
from analyzer.report.findings import (
    COLD_LOAD_MS,
    QUEUE_WAIT_MS,
    SLOW_MIN_RUN,
    STALL_GAP_RATIO,
    STALL_MIN_GAP_MS,
)


def codes_and_ids(records: list[InteractionRecord]) -> dict[str, list[str]]:
    return {f.code: f.ids for f in analyze(records).findings}


def test_clean_night_has_no_findings() -> None:
    analysis = analyze(clean_night())
    assert analysis.findings == []
    assert analysis.headline["requests"] == 40
    assert analysis.headline["errors"] == 0


def test_derived_timings() -> None:
    r = rec(
        "a",
        0,
        total_duration_ms=1000.0,
        load_duration_ms=100.0,
        prompt_eval_duration_ms=50.0,
        eval_duration_ms=600.0,
        total_ms=1030.0,
    )
    assert hidden_wait_ms(r) == 250.0
    assert wire_overhead_ms(r) == 30.0
    # never negative (rounding in Ollama's counters), None without Ollama's total
    assert hidden_wait_ms(rec("b", 0, total_duration_ms=100.0, eval_duration_ms=120.0)) == 0.0
    assert hidden_wait_ms(rec("c", 0, total_duration_ms=None)) is None
    assert wire_overhead_ms(rec("d", 0, total_ms=None)) is None
    assert to_request(rec("e", 0, started_at="not a time")) is None


def test_cold_load() -> None:
    records = [*clean_night(), rec("cold", 400, load_duration_ms=COLD_LOAD_MS + 2500, total_duration_ms=4100.0)]
    assert codes_and_ids(records) == {"cold_load": ["cold"]}


def test_model_thrash_needs_three_cold_switches() -> None:
    def switching(n: int) -> list[InteractionRecord]:
        records = []
        for i in range(n + 1):
            model = "big-a" if i % 2 == 0 else "big-b"
            records.append(rec(f"sw{i}", i * 10.0, model=model, load_duration_ms=3000.0, total_duration_ms=3600.0))
        return records

    two = codes_and_ids(switching(2))
    assert "model_thrash" not in two
    found = codes_and_ids(switching(3))
    assert found["model_thrash"] == ["sw1", "sw2", "sw3"]  # the first request is a load, not a switch
    assert found["cold_load"] == ["sw0", "sw1", "sw2", "sw3"]


def test_queueing_needs_overlap_and_a_large_hidden_wait() -> None:
    wait = QUEUE_WAIT_MS + 700
    first = rec("q1", 100.0, total_ms=600.0)
    second = rec("q2", 100.1, total_duration_ms=575.0 + wait, total_ms=590.0 + wait)
    third = rec("q3", 100.2, total_duration_ms=575.0 + 2 * wait, total_ms=590.0 + 2 * wait)
    assert codes_and_ids([*clean_night(), first, second, third]) == {"queueing": ["q2", "q3"]}
    # The same hidden wait without any overlapping request is not queueing.
    alone = rec("alone", 900.0, total_duration_ms=575.0 + wait, total_ms=590.0 + wait)
    assert codes_and_ids([*clean_night(), alone]) == {}


def test_context_truncated_needs_growing_prompts_at_a_ceiling() -> None:
    # Prompts of 16,000+ characters need ~4,000+ tokens; Ollama evaluated 2,048 of each.
    growing = [rec(f"c{i}", 300 + i, prompt_eval_count=2048, prompt="word " * (3200 + 800 * i)) for i in range(4)]
    assert codes_and_ids([*clean_night(), *growing]) == {"context_truncated": ["c0", "c1", "c2", "c3"]}
    # The same prompt repeated: the count is the same because the prompt is, not because of a ceiling.
    same = [rec(f"s{i}", 300 + i, prompt_eval_count=2048, prompt="word " * 3200) for i in range(4)]
    assert codes_and_ids([*clean_night(), *same]) == {}
    # Prompts that grow while their counts stay equal but the text fits the tokens (short, templated prompts).
    short = [rec(f"t{i}", 300 + i, prompt_eval_count=40, prompt="x" * (60 + 10 * i)) for i in range(4)]
    assert codes_and_ids(short) == {}
    # Longer prompts count more tokens with a fixed template overhead: the biggest sit at the top, not cut.
    fitted = [rec(f"f{i}", i, prompt_eval_count=20 + i % 50, prompt="abcd" * (i % 50 + 1)) for i in range(200)]
    assert codes_and_ids(fitted) == {}


def test_length_cutoff() -> None:
    records = [*clean_night(), rec("cut", 400, done_reason="length")]
    assert codes_and_ids(records) == {"length_cutoff": ["cut"]}


def test_stall_is_long_and_far_above_the_median_gap() -> None:
    stalled = rec("stall", 400, gap_p50_ms=10.0, gap_max_ms=STALL_MIN_GAP_MS + 500)
    long_but_steady = rec("slow", 410, gap_p50_ms=(STALL_MIN_GAP_MS + 500) / STALL_GAP_RATIO * 2, gap_max_ms=1500.0)
    short = rec("short", 420, gap_p50_ms=1.0, gap_max_ms=STALL_MIN_GAP_MS / 2)
    # a tool call arrives whole after the model wrote it: a long silence that is not a stall
    tool = rec("tool", 430, gap_p50_ms=10.0, gap_max_ms=2500.0, tool_calls=[{"function": {"name": "f"}}])
    assert codes_and_ids([*clean_night(), stalled, long_but_steady, short, tool]) == {"stall": ["stall"]}


def test_slow_generation_needs_a_run() -> None:
    base = [rec(f"n{i}", i * 5.0) for i in range(10)]
    slow = [rec(f"slow{i}", 100 + i * 5.0, eval_tokens_per_s=30.0) for i in range(SLOW_MIN_RUN)]
    after = [rec(f"m{i}", 200 + i * 5.0) for i in range(3)]
    assert codes_and_ids([*base, *slow, *after]) == {"slow_generation": [r.id for r in slow]}
    # One slow request between fast ones is noise, not a slow period.
    assert codes_and_ids([*base, slow[0], *after]) == {}


@pytest.mark.parametrize(
    ("overrides", "code"),
    [
        ({"status": 404, "error": "model 'nope' not found", "model": "nope"}, "model_not_found"),
        (
            {"status": 500, "error": "model requires more system memory (9.1 GiB) than is available (4.0 GiB)"},
            "out_of_memory",
        ),
        ({"status": 400, "error": "input length exceeds maximum context length"}, "context_exceeded"),
        ({"status": 500, "error": "llama runner process has terminated"}, "server_error"),
        ({"status": 400, "error": "invalid options"}, "bad_request"),
        ({"error": "something broke", "flags": ["error_mid_stream"], "complete": False}, "error_mid_stream"),
        (
            {"status": None, "error": "Connection refused", "flags": ["upstream_failed", "no_response"]},
            "upstream_failed",
        ),
        ({"flags": ["client_aborted"], "complete": False, "done_reason": None}, "client_aborted"),
    ],
)
def test_one_error_finding_per_category(overrides: dict[str, object], code: str) -> None:
    failed = [rec(f"e{i}", 400 + i, **overrides) for i in range(2)]
    found = analyze([*clean_night(), *failed])
    assert {f.code: f.ids for f in found.findings} == {code: ["e0", "e1"]}
    assert found.headline["errors"] == 2
    assert found.findings[0].group == "errors"


def test_capture_loss() -> None:
    records = [
        *clean_night(),
        rec("gap", 400, source="pcap", flags=["gap_in_capture"]),
        rec("cut", 410, source="pcap", flags=["capture_ended_mid_response"], complete=False),
    ]
    found = analyze(records).findings
    assert [(f.code, f.ids, f.severity) for f in found] == [("capture_loss", ["gap", "cut"], "warning")]


def test_every_finding_has_evidence_times_and_a_suggestion() -> None:
    records = [
        *clean_night(),
        rec("cold", 400, load_duration_ms=5000.0, total_duration_ms=5600.0),
        rec("cut", 410, done_reason="length"),
        rec("oom", 420, status=500, error="model requires more system memory"),
    ]
    findings = analyze(records).findings
    assert [f.code for f in findings] == ["out_of_memory", "cold_load", "length_cutoff"]  # errors first
    for f in findings:
        data = f.to_dict()
        assert data["ids"] and data["count"] == len(data["ids"])
        assert data["first"].endswith("Z") and data["first"] <= data["last"]
        assert data["suggestion"] and data["detail"] and data["title"]
