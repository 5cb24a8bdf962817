"""The library's answers behind ``logs`` and ``analyze-pcap``: every way of reading gives the same records."""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

from analyzer.pcap.analyze import AnalyzeOptions, CaptureResult
from analyzer.pcap.batch import analyze_records
from analyzer.protocol.record import InteractionRecord
from analyzer.store.log import InteractionLog, read_log
from analyzer.store.query import matching_records, matching_summary
from analyzer.store.select import select
from analyzer.store.tables import summary_stats

CAPTURES = Path(__file__).resolve().parents[1] / "data" / "captures"
MANIFEST = json.loads((CAPTURES / "manifest.json").read_text(encoding="utf-8"))["captures"]
PORTS = (MANIFEST["lo4"]["port"], MANIFEST["cut"]["port"])


def _log(tmp_path: Path) -> Path:
    start = datetime(2026, 3, 1, 23, 0, tzinfo=UTC)
    records = [
        InteractionRecord(
            id=f"r{i}",
            source="proxy",
            started_at=(start + timedelta(minutes=7 * i)).isoformat().replace("+00:00", "Z"),
            model=("a", "b", None)[i % 3],
            status=500 if i % 5 == 0 else 200,
            error="boom" if i % 5 == 0 else None,
            total_ms=100.0,
            ttft_ms=10.0 + i,
            eval_count=4,
        )
        for i in range(40)
    ]
    InteractionLog(tmp_path).append_many(records)
    return tmp_path


def test_matching_records_is_select_of_the_whole_log(tmp_path: Path) -> None:
    log_dir = _log(tmp_path)
    everything = read_log(log_dir)
    since = datetime(2026, 3, 2, 1, 0, tzinfo=UTC)
    for count in (0, 1, 7, 100):
        for kwargs in ({}, {"model": "a"}, {"since": since}, {"errors_only": True}, {"model": "b", "since": since}):
            expected = select(everything, **kwargs)  # type: ignore[arg-type]
            expected = expected[-count:] if count else expected
            assert [r.id for r in matching_records(log_dir, count=count, **kwargs)] == [r.id for r in expected]  # type: ignore[arg-type]


def test_matching_summary_fast_path_and_record_path_agree(tmp_path: Path) -> None:
    log_dir = _log(tmp_path)
    since = datetime(2026, 3, 2, 1, 0, tzinfo=UTC)
    for kwargs in ({}, {"model": "a"}, {"since": since}, {"errors_only": True}):
        fast, none = matching_summary(log_dir, **kwargs)  # type: ignore[arg-type]
        slow, records = matching_summary(log_dir, with_records=True, **kwargs)  # type: ignore[arg-type]
        assert none == [] and fast == slow == summary_stats(records)
        assert [r.id for r in records] == [r.id for r in select(read_log(log_dir), **kwargs)]  # type: ignore[arg-type]
    assert {row["model"] for row in matching_summary(log_dir)[0]} == {"a", "b", "(none)"}


def test_analyze_records_streamed_batch_and_logged_give_the_same_records(tmp_path: Path) -> None:
    files = [tmp_path / "lo4.pcap", tmp_path / "cut.pcap"]
    for file in files:
        shutil.copy(CAPTURES / file.name, file)
    options = AnalyzeOptions(ports=PORTS)

    def ids(**kwargs: object) -> tuple[list[str], list[Path]]:
        heard: list[Path] = []

        def on_result(result: CaptureResult) -> None:
            heard.append(result.path)

        records = [r.id for r in analyze_records(files, options, on_result=on_result, **kwargs)]  # type: ignore[arg-type]
        return records, heard

    batch, heard_batch = ids()
    streamed, heard_streamed = ids(completion_order=True)
    logged, heard_logged = ids(log_dir=tmp_path / "log")
    assert batch and sorted(batch) == sorted(streamed) and batch == logged
    assert heard_batch == heard_streamed == heard_logged == files
    assert [r.id for r in read_log(tmp_path / "log")] == logged
    skipped: list[int] = []
    again, _ = ids(log_dir=tmp_path / "log", on_skip=skipped.append)
    assert again == [] and skipped == [2]


def test_analyze_records_enriches_each_file_once_and_holds_only_files_that_need_it(tmp_path: Path) -> None:
    files = [tmp_path / "lo4.pcap", tmp_path / "cut.pcap"]
    for file in files:
        shutil.copy(CAPTURES / file.name, file)
    enriched: list[tuple[Path, int]] = []

    def enrich(result: CaptureResult) -> None:
        enriched.append((result.path, len(result.records)))

    for kwargs in ({}, {"log_dir": tmp_path / "log"}):
        enriched.clear()
        records = list(analyze_records(files, AnalyzeOptions(ports=PORTS), enrich=enrich, **kwargs))  # type: ignore[arg-type]
        assert [path for path, _ in enriched] == [p for p in files if any(e[0] == p for e in enriched)]
        assert sum(n for _, n in enriched) == len(records)
    enriched.clear()
    list(
        analyze_records(
            files, AnalyzeOptions(ports=PORTS), completion_order=True, enrich=enrich, held_whole=lambda p: p == files[1]
        )
    )
    assert [path for path, _ in enriched] == [files[1]]
