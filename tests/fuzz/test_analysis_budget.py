"""The capture runner's second line of defence: each file's analysis has a time budget (a killed child
process past it); the file is reported failed in one line naming it and the runner goes on."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from seeds import seed_files

from analyzer.pcap.analyze import AnalyzeOptions, analyze_capture_bounded
from analyzer.pcap.batch import size_budget
from analyzer.store.log import read_log
from capture_scripts.config import load_config
from capture_scripts.runner import analyze_snapshots


def _config(tmp_path: Path):  # type: ignore[no-untyped-def]
    cfg = tmp_path / "capture.yaml"
    cfg.write_text(
        f"output_dir: {tmp_path}/out\nstate_dir: {tmp_path}/state\nmethod: direct\ninterface: lo\n"
        f"ports: [11434]\nanalyze: true\nlog_dir: {tmp_path}/logs\n"
    )
    return load_config(cfg)


def test_a_file_over_its_budget_is_reported_and_the_next_is_analyzed(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = _config(tmp_path)
    config.output_dir.mkdir(parents=True)
    seeds = seed_files()
    slow = config.output_dir / "ollama-20260101T000000Z.pcap"
    fine = config.output_dir / "ollama-20260101T000100Z.pcap"
    slow.write_bytes(seeds["v4-eth.pcap"])
    fine.write_bytes(seeds["v6-eth.pcap"])

    def budget(path: Path) -> float:  # the slow file gets no time at all: its child is killed unfinished
        return 0.0 if path == slow else size_budget(path)

    with caplog.at_level(logging.ERROR, logger="ollama_capture"):
        appended = analyze_snapshots(config, budget=budget)
    assert appended == 2  # the v6 seed's two exchanges
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == [f"analyzer: {slow}: analysis gave up after 0 s (its time budget)"]
    assert len(read_log(config.log_dir)) == 2
    # The failed file is not entered in the ledger: the next run tries it again (and now has time).
    assert analyze_snapshots(config) == 3
    assert len(read_log(config.log_dir)) == 5


def test_bounded_analysis_gives_the_same_records_as_in_process(tmp_path: Path) -> None:
    path = tmp_path / "seed.pcapng"
    path.write_bytes(seed_files()["pipelined-eth.pcapng"])
    result = analyze_capture_bounded(path, AnalyzeOptions(), size_budget(path))
    assert result.error is None
    assert [r.to_json() for r in result.records] == [
        r.to_json() for r in analyze_capture_bounded(path, AnalyzeOptions(), 120.0).records
    ]
    assert len(result.records) == 3


def test_budget_grows_with_size(tmp_path: Path) -> None:
    small, big = tmp_path / "a.pcap", tmp_path / "b.pcap"
    small.write_bytes(b"x")
    big.write_bytes(b"x" * 5_000_000)
    assert size_budget(big) > size_budget(small) >= 60
