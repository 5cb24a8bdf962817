"""analyze-pcap joins the resource timeline saved beside a capture (NAME.resources.jsonl) by time."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from analyzer.cli.analyze import analyze_pcap
from analyzer.resources.attribution import parse_started_at
from analyzer.resources.timeline import timeline_path
from analyzer.store.log import read_log
from tests.support.workload import RealCapture


@pytest.fixture(scope="module")
def lo4(capture_shapes: dict[str, RealCapture]) -> RealCapture:
    return capture_shapes["lo4"]


def _records(path: Path, port: int, *extra: str) -> list[dict]:
    result = CliRunner().invoke(analyze_pcap, [str(path), "--port", str(port), "--jsonl", *extra])
    assert result.exit_code == 0, result.output
    return [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]


def _timeline_for(records: list[dict], path: Path) -> float:
    """A timeline over the capture: 0.5 CPU s per second, 700 MB resident; returns the CPU seconds it spans."""
    starts = [parse_started_at(r["started_at"]) for r in records]
    ends = [s + (r["total_ms"] or 0) / 1000 for s, r in zip(starts, records, strict=True) if s is not None]
    low, high = min(s for s in starts if s is not None) - 1, max(ends) + 1
    steps = 40
    lines = []
    for i in range(steps + 1):
        t = low + (high - low) * i / steps
        lines.append(json.dumps({"t": t, "values": {"cpu_s": 0.5 * (t - low), "rss_mb": 700.0}}))
    path.write_text("\n".join(lines) + "\n")
    return 0.5 * (high - low)


def test_a_timeline_beside_the_capture_fills_the_resource_columns(lo4: RealCapture, tmp_path: Path) -> None:
    capture = tmp_path / "ollama-lo4.pcap"
    shutil.copy(lo4.path, capture)
    plain = _records(capture, lo4.port)
    assert plain and all(r["server_cpu_ms"] is None for r in plain)
    total_cpu_s = _timeline_for(plain, timeline_path(capture))
    joined = _records(capture, lo4.port)
    assert [r["id"] for r in joined] == [r["id"] for r in plain]
    assert all(r["server_rss_max_mb"] == 700.0 and r["server_cpu_ms"] is not None for r in joined)
    assert sum(r["server_cpu_ms"] for r in joined) <= total_cpu_s * 1000 + 1e-6  # shares, never more than used
    assert all(r["energy_j"] is None and r["gpu_util_mean_pct"] is None for r in joined)  # not in this timeline
    # The table and --log-dir take the same path.
    CliRunner().invoke(analyze_pcap, [str(capture), "--port", str(lo4.port), "--log-dir", str(tmp_path / "log")])
    logged = read_log(tmp_path / "log")
    assert {r.id: r.server_cpu_ms for r in logged} == {r["id"]: r["server_cpu_ms"] for r in joined}


def test_an_unreadable_timeline_is_a_warning_naming_it(lo4: RealCapture, tmp_path: Path) -> None:
    capture = tmp_path / "ollama-lo4.pcap"
    shutil.copy(lo4.path, capture)
    timeline_path(capture).mkdir()  # a directory where the file should be
    result = CliRunner().invoke(analyze_pcap, [str(capture), "--port", str(lo4.port), "--json"])
    assert result.exit_code == 0
    assert f"warning: {timeline_path(capture)}: cannot read resource timeline" in result.stderr
    assert all(r["server_cpu_ms"] is None for r in json.loads(result.stdout))
