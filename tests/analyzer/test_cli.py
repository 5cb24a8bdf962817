"""The click commands: every one has help, `logs` filters and exports, the README documents the addon options."""

from __future__ import annotations

import csv
import io
import json
import re
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from analyzer.cli.main import SUBCOMMANDS, cli
from analyzer.log import InteractionLog
from analyzer.record import COLUMNS, InteractionRecord

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("name", sorted(SUBCOMMANDS))
def test_every_command_has_help(name: str) -> None:
    result = CliRunner().invoke(cli, [name, "--help"])
    assert result.exit_code == 0, result.output
    summary = result.output.split("\n\n")[1].strip()
    assert len(summary) > 20, f"{name} has no real help text"


def _record(i: int, model: str, started: str, **extra) -> InteractionRecord:
    return InteractionRecord(
        id=f"r{i}",
        source="proxy",
        started_at=started,
        method="POST",
        path="/api/generate",
        status=200,
        api="ollama",
        kind="generate",
        model=model,
        response_text=f"text {i}",
        ttft_ms=10.0 * (i + 1),
        eval_count=10,
        eval_tokens_per_s=50.0 + i,
        total_ms=100.0,
        flags=["a", "b"] if i == 0 else [],
        **extra,
    )


@pytest.fixture
def log_dir(tmp_path: Path) -> Path:
    log = InteractionLog(tmp_path / "log")
    log.append_many(
        [
            _record(0, "m1", "2026-01-01T10:00:00.000000Z"),
            _record(1, "m2", "2026-01-02T10:00:00.000000Z"),
            _record(2, "m1", "2026-01-02T11:00:00.000000Z", error="boom"),
        ]
    )
    return tmp_path / "log"


def test_logs_table_filters_and_summary(log_dir: Path) -> None:
    run = CliRunner().invoke
    out = run(cli, ["logs", "--log-dir", str(log_dir)]).output
    assert out.count("/api/generate") == 3
    out = run(cli, ["logs", "--log-dir", str(log_dir), "--model", "m2"]).output
    assert out.count("/api/generate") == 1 and "m2" in out
    out = run(cli, ["logs", "--log-dir", str(log_dir), "--errors"]).output
    assert "boom" in out and out.count("/api/generate") == 1
    out = run(cli, ["logs", "--log-dir", str(log_dir), "--since", "2026-01-02"]).output
    assert out.count("/api/generate") == 2
    out = run(cli, ["logs", "--log-dir", str(log_dir), "-n", "1"]).output
    assert out.count("/api/generate") == 1 and "11:00" in out
    out = run(cli, ["logs", "--log-dir", str(log_dir), "--summary"]).output
    m1 = next(line for line in out.splitlines() if line.startswith("m1"))
    assert re.split(r"\s+", m1)[:3] == ["m1", "2", "1"]  # model, count, errors


def test_logs_exports(log_dir: Path, tmp_path: Path) -> None:
    run = CliRunner().invoke
    out = run(cli, ["logs", "--log-dir", str(log_dir), "--csv"]).output
    rows = list(csv.DictReader(io.StringIO(out)))
    assert list(rows[0].keys()) == list(COLUMNS) and rows[0]["flags"] == "a;b"
    out = run(cli, ["logs", "--log-dir", str(log_dir), "--jsonl"]).output
    assert [json.loads(line)["id"] for line in out.splitlines()] == ["r0", "r1", "r2"]
    target = tmp_path / "out.json"
    assert run(cli, ["logs", "--log-dir", str(log_dir), "--json", "-o", str(target)]).exit_code == 0
    assert len(json.loads(target.read_text())) == 3
    db = tmp_path / "i.db"
    assert run(cli, ["logs", "--log-dir", str(log_dir), "--sqlite", str(db)]).exit_code == 0
    with sqlite3.connect(db) as conn:
        assert conn.execute("select count(*), sum(error is not null) from interactions").fetchone() == (3, 1)


def test_logs_bad_input_is_one_line(tmp_path: Path) -> None:
    not_dir = tmp_path / "f"
    not_dir.write_text("x")
    result = CliRunner().invoke(cli, ["logs", "--log-dir", str(not_dir)])
    assert result.exit_code != 0 and "Traceback" not in result.output
    result = CliRunner().invoke(cli, ["logs", "--since", "yesterday-ish", "--log-dir", str(tmp_path)])
    assert result.exit_code == 2 and "yesterday-ish" in result.output


def test_logs_skips_a_half_written_line(log_dir: Path) -> None:
    with next(log_dir.glob("*.jsonl")).open("a") as fh:
        fh.write('{"id": "cut-sho')
    result = CliRunner().invoke(cli, ["logs", "--log-dir", str(log_dir), "--jsonl"])
    assert result.exit_code == 0 and "skipped a line" in result.output


def test_readme_documents_every_addon_option() -> None:
    addon = (ROOT / "addons" / "ollama_log.py").read_text()
    declared = set(re.findall(r'add_option\(\s*"(ollama_\w+)"', addon))
    readme = (ROOT / "README.md").read_text()
    documented = set(re.findall(r"^\| `(ollama_\w+)` \|", readme, re.MULTILINE))
    assert declared and declared == documented


def test_cli_reference_is_up_to_date() -> None:
    """docs/cli.md is generated from --help: regenerate with `python docs/generate_cli.py`."""
    result = subprocess.run([sys.executable, str(ROOT / "docs" / "generate_cli.py"), "--check"], capture_output=True)
    assert result.returncode == 0, result.stderr.decode()
