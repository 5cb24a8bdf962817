"""The attribution rule (docs/record.md, Resources) on timelines whose right answer can be worked out by hand."""

from __future__ import annotations

from pathlib import Path

import pytest

from analyzer.protocol.record import InteractionRecord
from analyzer.resources.attribution import Activity, activity_of, attribute_records, resource_columns
from analyzer.resources.timeline import Sample, Timeline, read_timeline, timeline_path


def counter(name: str, points: list[tuple[float, float]]) -> list[Sample]:
    return [Sample(t, {name: v}) for t, v in points]


def test_a_request_alone_gets_the_whole_increase_over_its_span() -> None:
    samples = counter("energy_j", [(0, 0), (10, 100)])  # 10 W
    alone = Activity("a", 2, 6, tokens=10, token_start=3, token_end=6)
    assert resource_columns(alone, [], samples, eval_count=10)["energy_j"] == pytest.approx(40)
    assert resource_columns(alone, [], samples, eval_count=10)["joules_per_token"] == pytest.approx(4)


def test_overlap_is_shared_by_tokens_generated_in_it() -> None:
    samples = counter("cpu_s", [(0, 0), (10, 10)])  # one CPU second per second
    a = Activity("a", 0, 4, tokens=30, token_start=1, token_end=4)  # 10 tokens/s
    b = Activity("b", 2, 4, tokens=10, token_start=3, token_end=4)  # 10 tokens in its last second
    # a: [0,1) alone, no tokens → 1 s; [1,2) alone → 1 s; [2,3) b active but no tokens of b → a all (1 s);
    # [3,4): a made 10, b made 10 → half. a = 3.5 s, b = 0.5 s; together the 4 s that were used.
    columns_a = resource_columns(a, [b], samples)
    columns_b = resource_columns(b, [a], samples)
    assert columns_a["server_cpu_ms"] == pytest.approx(3500)
    assert columns_b["server_cpu_ms"] == pytest.approx(500)


def test_without_tokens_a_slice_is_shared_equally() -> None:
    samples = counter("energy_j", [(0, 0), (4, 40)])
    a = Activity("a", 0, 4)  # e.g. two embeddings: no token windows
    b = Activity("b", 2, 4)
    assert resource_columns(a, [b], samples)["energy_j"] == pytest.approx(20 + 10)
    assert resource_columns(b, [a], samples)["energy_j"] == pytest.approx(10)


def test_idle_time_is_nobodys_and_a_counter_restart_adds_nothing() -> None:
    samples = counter("energy_j", [(0, 0), (1, 10), (2, 3), (3, 13)])  # restarted between 1 and 2
    request = Activity("a", 0, 3)
    assert resource_columns(request, [], samples)["energy_j"] == pytest.approx(20)
    later = Activity("b", 10, 11)
    assert resource_columns(later, [], samples)["energy_j"] is None  # no reading covers it


def test_gauges_weight_each_reading_by_its_interval_inside_the_request() -> None:
    samples = [
        Sample(0, {"gpu_util_pct": 0, "rss_mb": 100, "power_w": 10}),
        Sample(1, {"gpu_util_pct": 100, "rss_mb": 300, "power_w": 30}),  # covers (0, 1]
        Sample(2, {"gpu_util_pct": 50, "rss_mb": 200, "power_w": 20}),  # covers (1, 2]
    ]
    columns = resource_columns(Activity("a", 0.5, 2), [], samples)
    assert columns["gpu_util_mean_pct"] == pytest.approx((0.5 * 100 + 1 * 50) / 1.5)
    assert columns["power_mean_w"] == pytest.approx((0.5 * 30 + 1 * 20) / 1.5)
    assert columns["server_rss_max_mb"] == 300
    assert columns["gpu_mem_max_mb"] is None and columns["energy_j"] is None


def test_a_live_request_is_covered_up_to_hold_past_the_newest_sample() -> None:
    samples = counter("cpu_s", [(0, 0), (1, 0.5)])
    request = Activity("a", 0.5, 1.2)
    assert resource_columns(request, [], samples)["server_cpu_ms"] == pytest.approx(250)  # clipped at 1
    assert resource_columns(request, [], samples, hold=0.3)["server_cpu_ms"] == pytest.approx(350)  # rate held on


def test_power_integrates_into_energy_when_no_counter_exists() -> None:
    timeline = Timeline()
    for t, watts in ((0, 10), (1, 30), (2, 30)):
        timeline.add(t, {"power_w": watts})
    assert [s.values["energy_j"] for s in timeline.samples()] == [0, 20, 50]


def test_ring_buffer_is_bounded_and_windows_walk_back_from_the_newest() -> None:
    timeline = Timeline(capacity=5)
    for t in range(10):
        timeline.add(t, {"cpu_s": t})
    assert len(timeline) == 5 and timeline.dropped == 5
    assert [s.t for s in timeline.window(6.5, 7.5)] == [6, 7, 8]


def record(rid: str, started_at: str, total_ms: float, ttft_ms: float, gen_ms: float, tokens: int) -> InteractionRecord:
    return InteractionRecord(
        id=rid, source="pcap", started_at=started_at, stream=True, total_ms=total_ms, ttft_ms=ttft_ms,
        gen_ms=gen_ms, eval_count=tokens,
    )  # fmt: skip


def test_records_from_a_capture_join_a_timeline_file(tmp_path: Path) -> None:
    capture = tmp_path / "ollama-20261130T213800Z.pcap"
    base = 1796074680.0  # 2026-11-30T21:38:00Z
    lines = [f'{{"t": {base + i * 0.5}, "values": {{"cpu_s": {i * 0.25}, "rss_mb": 512}}}}' for i in range(9)]
    timeline_path(capture).write_text("\n".join([*lines, "not json", ""]))
    timeline = read_timeline(timeline_path(capture))
    records = [
        record("a", "2026-11-30T21:38:00.000000Z", 2000, 500, 1500, 30),
        record("b", "2026-11-30T21:38:01.000000Z", 1000, 500, 500, 10),
        record("late", "2026-11-30T22:00:00.000000Z", 1000, 10, 900, 10),
    ]
    assert attribute_records(records, timeline) == 2
    a, b, late = records
    assert a.server_rss_max_mb == b.server_rss_max_mb == 512
    # 0.5 CPU s per s over a's 2 s = 1000 ms. a makes 20 tok/s over [0.5, 2]; b 20 tok/s over [1.5, 2].
    # b: [1, 1.5) a generates, b not → 0; [1.5, 2) half of 250 ms → 125 ms. a: the rest.
    assert b.server_cpu_ms == pytest.approx(125)
    assert a.server_cpu_ms == pytest.approx(875)
    assert late.server_cpu_ms is None and late.energy_j is None


def test_activity_of_a_non_streamed_record_spans_the_whole_exchange() -> None:
    body = InteractionRecord(
        id="x", started_at="2026-11-30T21:38:00Z", stream=False, total_ms=1000, ttft_ms=1000, eval_count=5
    )
    activity = activity_of(body)
    assert activity is not None
    assert activity.token_start == activity.start and activity.token_end == activity.end


def test_a_zero_length_request_has_unknown_counters_not_zero() -> None:
    samples = [
        Sample(0, {"cpu_s": 0, "rss_mb": 10, "energy_j": 0}),
        Sample(1, {"cpu_s": 1, "rss_mb": 20, "energy_j": 9}),
    ]
    columns = resource_columns(Activity("a", 0.5, 0.5), [], samples, eval_count=10)
    assert columns["server_cpu_ms"] is None and columns["energy_j"] is None and columns["joules_per_token"] is None
    assert columns["energy_source"] is None
    assert columns["server_rss_max_mb"] == 20  # a gauge has a reading at that instant


def test_a_real_energy_counter_is_never_mixed_with_integrated_power() -> None:
    timeline = Timeline()
    timeline.add(0, {"power_w": 100, "energy_j": 500})
    timeline.add(1, {"power_w": 100})  # the counter read failed once
    timeline.add(2, {"power_w": 100, "energy_j": 700})
    assert ["energy_j" in s.values for s in timeline.samples()] == [True, False, True]
    assert resource_columns(Activity("a", 0, 2), [], timeline.samples())["energy_j"] == pytest.approx(200)
