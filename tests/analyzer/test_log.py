"""The interaction log: append-only daily JSONL shared by every writer."""

from __future__ import annotations

from pathlib import Path

from analyzer.protocol.record import InteractionRecord
from analyzer.store.log import InteractionLog, log_files, read_log


def _rec(i: int) -> InteractionRecord:
    return InteractionRecord(id=f"r{i}", source="proxy", started_at="2026-01-01T00:00:00.000000Z")


def test_a_half_written_line_does_not_swallow_the_next_record(tmp_path: Path) -> None:
    log = InteractionLog(tmp_path)
    log.append(_rec(1))
    with log_files(tmp_path)[0].open("a") as fh:
        fh.write('{"id": "killed-mid-wri')  # a writer killed mid-line
    log.append(_rec(2))
    warnings: list[str] = []
    assert [r.id for r in read_log(tmp_path, warn=warnings.append)] == ["r1", "r2"]
    assert len(warnings) == 1 and ":2:" in warnings[0]


def test_lines_that_are_json_but_not_records_are_skipped_with_a_warning(tmp_path: Path) -> None:
    InteractionLog(tmp_path).append(_rec(1))
    with log_files(tmp_path)[0].open("a") as fh:
        fh.write('[1, 2]\n{"id": "x", "started_at": 5}\n{"id": "y", "complete": "yes"}\n')
    warnings: list[str] = []
    assert [r.id for r in read_log(tmp_path, warn=warnings.append)] == ["r1"]
    assert [w.split("(")[1] for w in warnings] == [
        "a JSON list, not an object)",
        "started_at is int)",
        "complete is str)",
    ]


def test_the_capture_ledger_beside_the_log_is_not_read_as_records(tmp_path: Path) -> None:
    InteractionLog(tmp_path).append(_rec(1))
    (tmp_path / ".captures-ledger.jsonl").write_text('{"sha256": "ab", "path": "x.pcap", "records": 1}\n')
    assert [r.id for r in read_log(tmp_path)] == ["r1"]
