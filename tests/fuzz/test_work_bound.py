"""The HTTP parser's production fail-safe: past its work bound a connection is given up, counted and reported
(never a spin). The bound is lowered here so that an ordinary capture trips it."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner
from seeds import seed_files

from analyzer.cli.analyze import analyze_pcap
from analyzer.pcap import http
from analyzer.pcap.analyze import AnalyzeOptions, analyze_capture


def test_ordinary_capture_stays_far_below_the_bound(tmp_path: Path) -> None:
    path = tmp_path / "v4.pcap"
    path.write_bytes(seed_files()["v4-eth.pcap"])
    result = analyze_capture(path, AnalyzeOptions())
    assert result.stats.stalled_connections == 0 and len(result.records) == 3


def test_a_tripped_bound_gives_the_connection_up_and_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "v4.pcap"
    path.write_bytes(seed_files()["v4-eth.pcap"])
    for name in ("STEPS_PER_BYTE", "STEPS_PER_CALL", "STEPS_BASE"):
        monkeypatch.setattr(http, name, 0)
    result = analyze_capture(path, AnalyzeOptions())
    assert result.stats.stalled_connections == 1 and result.error is None
    done = CliRunner().invoke(analyze_pcap, [str(path)])
    assert f"warning: {path}: gave up on 1 connection(s) whose HTTP parsing stopped making progress" in done.output
    assert "Traceback" not in done.output
