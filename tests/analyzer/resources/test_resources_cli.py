"""``ollama-wire resources``: every sampler says what it sees here, or why it cannot; --record writes a timeline."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

from click.testing import CliRunner

from analyzer.cli.main import cli
from analyzer.recorder.process import free_port
from analyzer.resources.registry import SOURCE_NAMES
from analyzer.resources.timeline import read_timeline


def test_check_reports_every_source(emulator) -> None:
    result = CliRunner().invoke(cli, ["resources", "--check", "--server", f"127.0.0.1:{emulator.port}"])
    assert result.exit_code == 0, result.output
    lines = {line.split()[0]: line for line in result.output.splitlines() if line and not line.startswith(" ")}
    assert set(lines) == set(SOURCE_NAMES)
    assert all(" ok " in line or "unavailable: " in line for line in lines.values())
    # The emulator listens in this test process: the process source finds it, /api/ps answers.
    assert "cpu_s=" in lines["process"] and "rss_mb=" in lines["process"]
    assert f"server_pid: {os.getpid()}" in result.output
    assert " ok " in lines["ollama_ps"] and " ok " in lines["host"]


def test_check_json_and_a_server_nobody_listens_on() -> None:
    unused_tcp_port = free_port()
    result = CliRunner().invoke(
        cli,
        [
            "resources",
            "--check",
            "--json",
            "--sources",
            "process,ollama_ps",
            "--server",
            f"127.0.0.1:{unused_tcp_port}",
        ],
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["process"] == {
        "available": False,
        "reason": f"nothing listens on port {unused_tcp_port} (is Ollama running?)",
    }
    assert report["ollama_ps"]["available"] is False and "/api/ps" in report["ollama_ps"]["reason"]


def test_record_writes_a_private_timeline(tmp_path: Path, emulator) -> None:
    path = tmp_path / "t.resources.jsonl"
    result = CliRunner().invoke(
        cli,
        ["resources", "--record", str(path), "--duration", "1", "--interval", "100", "--sources", "process,host",
         "--server", f"127.0.0.1:{emulator.port}"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    samples = read_timeline(path).samples()
    assert len(samples) >= 3
    assert all("cpu_s" in s.values and "host_mem_used_pct" in s.values for s in samples)
    assert [s.t for s in samples] == sorted(s.t for s in samples)


def test_usage_errors() -> None:
    runner = CliRunner()
    assert runner.invoke(cli, ["resources"]).exit_code == 2
    bad = runner.invoke(cli, ["resources", "--check", "--sources", "gpu"])
    assert bad.exit_code == 2 and "unknown resource source 'gpu'" in bad.output
    assert runner.invoke(cli, ["resources", "--check", "--server", "localhost"]).exit_code == 2
