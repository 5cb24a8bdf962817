"""Reading the log from its end (``newest_records``) and the summary fast path (``digest``) give exactly what a
full read gives: ``select(read_log(...))`` and ``summary_stats`` of it."""

from __future__ import annotations

import json
import os
import random
import stat
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from analyzer.protocol.record import InteractionRecord
from analyzer.store import tail as tail_module
from analyzer.store.digest import (
    CACHE_DIR_NAME,
    DigestCache,
    decode_lines,
    fields_from_line,
    fields_of,
    summarize,
    summarize_log,
    summary_fields,
)
from analyzer.store.log import InteractionLog, read_log
from analyzer.store.select import select
from analyzer.store.tables import summary_stats
from analyzer.store.tail import LogFollower, lines_backwards, newest_records

NOW = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
MODELS = ("m1", "m2", None)


def make_record(rng: random.Random, i: int, started: datetime, source: str = "proxy") -> InteractionRecord:
    error = 'boom, "quoted" {x}' if rng.random() < 0.1 else None
    return InteractionRecord(
        id=f"r{i}",
        source=source,
        started_at=started.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        method="POST",
        path="/api/chat",
        status=500 if error else rng.choice((200, 200, 200, 404)),
        model=rng.choice(MODELS),
        messages=[{"role": "user", "content": 'hi "there", done_reason: {"id":"x"} ünï'}],
        response_text="text\n" * rng.randint(0, 5),
        tool_calls=[{"id": "call_1", "function": {"name": "f"}}] if rng.random() < 0.1 else [],
        error=error,
        ttft_ms=None if error else rng.uniform(10, 500),
        total_ms=rng.choice((None, rng.uniform(100, 300_000))),  # some run for minutes
        eval_count=rng.choice((None, rng.randint(0, 200))),
        eval_tokens_per_s=rng.choice((None, rng.uniform(5, 80))),
        wire_tokens_per_s=rng.choice((None, rng.uniform(5, 80))),
        flags=rng.choice(([], ["client_aborted"], ["a", "b"])),
    )


def write_log(directory: Path, seed: int, count: int = 400, days: int = 4) -> None:
    """Records over ``days`` days appended in finishing order, plus late pcap imports, like real logs."""
    rng = random.Random(seed)
    entries = []
    for i in range(count):
        started = NOW - timedelta(seconds=rng.uniform(0, days * 86400))
        record = make_record(rng, i, started, "proxy" if rng.random() < 0.85 else "pcap")
        written = started + timedelta(milliseconds=record.total_ms or 0)
        if record.source == "pcap":
            written += timedelta(hours=rng.uniform(0, 30))  # imported later, in a batch
        entries.append((written, record))
    entries.sort(key=lambda e: e[0])
    log = InteractionLog(directory)
    for _, record in entries:
        log.append(record)


@pytest.mark.parametrize("seed", range(4))
def test_newest_records_equal_a_full_read(tmp_path: Path, seed: int) -> None:
    write_log(tmp_path, seed)
    everything = read_log(tmp_path)
    for count in (0, 1, 5, 20, 1000):
        for since in (None, NOW - timedelta(hours=2), NOW - timedelta(days=1, hours=5), NOW - timedelta(days=9)):
            for model, errors_only in ((None, False), ("m1", False), (None, True)):
                expected = select(everything, model=model, since=since, errors_only=errors_only)
                expected = expected[-count:] if count else expected
                got = newest_records(tmp_path, count=count, since=since, model=model, errors_only=errors_only)
                assert [r.id for r in got] == [r.id for r in expected], (count, since, model, errors_only)


@pytest.mark.parametrize("seed", range(3))
def test_summary_fast_path_equals_a_full_read(tmp_path: Path, seed: int) -> None:
    write_log(tmp_path, seed)
    everything = read_log(tmp_path)
    for since in (None, NOW - timedelta(hours=30)):
        for model, errors_only in ((None, False), ("m2", False), (None, True)):
            expected = summary_stats(select(everything, model=model, since=since, errors_only=errors_only))
            for _ in range(2):  # cold (builds the cache), then warm
                got = summarize(summary_fields(tmp_path, since=since, model=model, errors_only=errors_only))
                assert got == expected
                assert summarize_log(tmp_path, since=since, model=model, errors_only=errors_only) == expected


def test_first_summary_in_worker_processes_is_the_same(tmp_path: Path) -> None:
    write_log(tmp_path, 11, count=300, days=6)
    with (tmp_path / sorted(p.name for p in tmp_path.glob("*.jsonl"))[2]).open("a") as fh:
        fh.write("{corrupt\n")
    expected_warnings: list[str] = []
    expected = summary_stats(read_log(tmp_path, warn=expected_warnings.append))
    warnings: list[str] = []
    assert summarize_log(tmp_path, warn=warnings.append, parallel_min_bytes=0) == expected
    assert [w.rsplit(":", 2)[-2] for w in warnings] == [w.rsplit(":", 2)[-2] for w in expected_warnings]
    assert len(list((tmp_path / CACHE_DIR_NAME).iterdir())) == len(list(tmp_path.glob("*.jsonl")))


def test_fast_line_decoding_agrees_with_json(tmp_path: Path) -> None:
    rng = random.Random(5)
    odd = [
        InteractionRecord(id="x", started_at="not a time", model='we"ird\\name', status=None),
        InteractionRecord(id="y", started_at="2026-01-01T00:00:00", error="", eval_tokens_per_s=float("nan")),
        InteractionRecord(id="z", started_at="2026-01-01T00:00:00Z", model="m", ttft_ms=1e-7, eval_count=0),
    ]
    for record in [make_record(rng, i, NOW) for i in range(200)] + odd:
        line = record.to_json().encode()
        got, want = fields_from_line(line), fields_of(InteractionRecord.from_dict(json.loads(line)))
        assert got == want or (got.rate != got.rate and want.rate != want.rate)  # NaN != NaN


def test_lines_backwards_with_small_blocks(tmp_path: Path) -> None:
    path = tmp_path / "x.jsonl"
    lines = [b"a" * 5, b"", b"b" * 40, b"  ", b"c", b"d" * 17 + b"\xc3\xa9", b"half-writ"]
    path.write_bytes(b"\n".join(lines))
    for block in (1, 3, 7, 64):
        got = list(lines_backwards(path, block))
        assert [line for _, line in got] == [line for line in reversed(lines) if line.strip()]
        data = path.read_bytes()
        assert all(data[offset : offset + len(line)] == line for offset, line in got)
    empty = tmp_path / "empty.jsonl"
    empty.write_bytes(b"")
    assert list(lines_backwards(empty)) == []


def _two_days(tmp_path: Path) -> list[InteractionRecord]:
    records = [
        InteractionRecord(id=f"r{i}", source="proxy", started_at=f"2026-01-0{d}T10:00:0{i}.000000Z", total_ms=5.0)
        for d in (1, 2, 3)
        for i in range(3)
    ]
    InteractionLog(tmp_path).append_many(records)
    return records


def test_half_written_last_line_is_skipped_with_a_warning(tmp_path: Path) -> None:
    _two_days(tmp_path)
    with (tmp_path / "2026-01-03.jsonl").open("a") as fh:
        fh.write('{"id": "cut-sho')
    warnings: list[str] = []
    got = newest_records(tmp_path, count=2, warn=warnings.append)
    assert [r.started_at[:19] for r in got] == ["2026-01-03T10:00:01", "2026-01-03T10:00:02"]
    assert len(warnings) == 1 and "2026-01-03.jsonl: byte" in warnings[0] and "not JSON" in warnings[0]
    warnings.clear()
    assert sum(row["count"] for row in summarize_log(tmp_path, warn=warnings.append)) == 9
    assert len(warnings) == 1 and "2026-01-03.jsonl:4: skipped a line that is not JSON" in warnings[0]


def test_since_reads_only_the_files_it_needs(tmp_path: Path) -> None:
    _two_days(tmp_path)
    (tmp_path / "2026-01-01.jsonl").write_text("corrupt, never read\n")
    (tmp_path / "2026-01-04.jsonl").write_text("")  # an empty newest file
    warnings: list[str] = []
    since = datetime(2026, 1, 2, 10, 0, 1, tzinfo=UTC)
    got = newest_records(tmp_path, since=since, warn=warnings.append)
    assert [r.started_at[:19] for r in got] == [
        "2026-01-02T10:00:01",
        "2026-01-02T10:00:02",
        "2026-01-03T10:00:00",
        "2026-01-03T10:00:01",
        "2026-01-03T10:00:02",
    ]
    assert newest_records(tmp_path, count=3, warn=warnings.append)[0].started_at.startswith("2026-01-03")
    assert warnings == []
    assert len(list(summary_fields(tmp_path, since=since, warn=warnings.append))) == 5 and warnings == []


def test_corrupt_lines_in_the_middle_are_skipped(tmp_path: Path) -> None:
    _two_days(tmp_path)
    path = tmp_path / "2026-01-02.jsonl"
    lines = path.read_text().splitlines()
    path.write_text("\n".join([lines[0], "{not json", '{"id": 5}', "[1]", *lines[1:]]) + "\n")
    warnings: list[str] = []
    assert len(newest_records(tmp_path, warn=warnings.append)) == 9
    assert len(warnings) == 3 and "JSON list" in warnings[0] and "id is int" in warnings[1]  # newest first
    warnings.clear()
    assert len(list(summary_fields(tmp_path, warn=warnings.append))) == 9
    assert [w.split(": ", 1)[0].rsplit(":", 1)[1] for w in warnings] == ["2", "3", "4"]


def test_summary_cache_follows_appends_rewrites_and_read_only_dirs(tmp_path: Path) -> None:
    records = _two_days(tmp_path)
    assert len(list(summary_fields(tmp_path))) == 9
    cache = tmp_path / CACHE_DIR_NAME
    assert stat.S_IMODE(cache.stat().st_mode) == 0o700
    assert {stat.S_IMODE(p.stat().st_mode) for p in cache.iterdir()} == {0o600}
    extra = InteractionRecord(id="new", source="proxy", started_at="2026-01-03T23:00:00Z", model="late")
    InteractionLog(tmp_path).append(extra)  # today's file grows: decoded from where the cache stopped
    assert [f.model for f in summary_fields(tmp_path)].count("late") == 1
    path = tmp_path / "2026-01-03.jsonl"
    path.write_text(records[6].to_json() + "\n")  # rewritten (shorter, new content): rebuilt
    assert len(list(summary_fields(tmp_path))) == 7
    same_size = records[7].to_json().replace('"r1"', '"q1"') + "\n"
    path.unlink()
    path.write_text(same_size)  # replaced by another file of the same size: a new inode
    assert [f.started for f in summary_fields(tmp_path)][-1] == fields_of(records[7]).started
    os.chmod(cache, 0o500)
    try:
        InteractionLog(tmp_path).append(extra)
        assert len(list(summary_fields(tmp_path))) == 8  # cache not writable: still right
    finally:
        os.chmod(cache, 0o700)
    assert DigestCache(tmp_path).rows(path)  # and it recovers


def test_block_decoding_handles_every_kind_of_line() -> None:
    rng = random.Random(7)
    records = [make_record(rng, i, NOW) for i in range(30)]
    lines = [r.to_json().encode() for r in records]
    lines[3] = lines[3][:60] + lines[4]  # a killed writer's half line with the next record glued on
    lines[5] = b"   "
    lines[7] = b"{not json"
    lines[9] = json.dumps(records[9].to_dict()).encode()  # another writer's spacing: decoded by json
    lines[11] = lines[11].replace(b'"status":', b'"status":"x",', 1)  # matches nothing: json says why
    data = b"\n".join(lines) + b"\n"
    rows, problems = decode_lines(data, first_number=101)
    expected = []
    for line in lines:
        try:
            data_dict = json.loads(line)
        except ValueError:
            continue
        if isinstance(data_dict, dict) and data_dict.get("status") != "x":
            expected.append(fields_of(InteractionRecord.from_dict(data_dict)))
    assert rows == expected
    assert [p.split(":")[0] for p in problems] == ["104", "108", "112"]


def test_log_follower_reads_new_lines_only_and_starts_near_the_end_of_a_big_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = InteractionLog(tmp_path)
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S.000000Z", time.gmtime())
    log.append_many(InteractionRecord(id=f"r{i}", started_at=stamp, model="m", prompt="x" * 200) for i in range(50))
    monkeypatch.setattr(tail_module, "FOLLOW_INITIAL_BYTES", 2000)  # "big": more than 2000 bytes
    tail = LogFollower(tmp_path)
    first = [r.id for r in tail.poll()]
    assert first and first == [f"r{i}" for i in range(50 - len(first), 50)] and len(first) < 50
    assert tail.poll() == []
    log.append(InteractionRecord(id="new", started_at=stamp, model="m"))
    assert [r.id for r in tail.poll()] == ["new"]
    assert LogFollower(tmp_path / "missing").poll() == []
