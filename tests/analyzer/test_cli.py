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
from analyzer.protocol.record import COLUMNS, InteractionRecord
from analyzer.store.log import InteractionLog

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


def cells(output: str) -> list[list[str]]:
    """A table's whole output, normalised for column widths: every line as its cells (split on 2+ spaces)."""
    return [re.split(r"\s{2,}", line.strip()) for line in output.splitlines()]


HEADER = [
    "started_at",
    "method",
    "path",
    "kind",
    "model",
    "status",
    "ttft_ms",
    "thinking_ms",
    "eval_count",
    "tok_per_s",
    "total_ms",
    "flags",
]
ROW0 = [
    "2026-01-01 10:00:00.000",
    "POST",
    "/api/generate",
    "generate",
    "m1",
    "200",
    "10.0",
    "10",
    "50.0",
    "100.0",
    "a;b",
]
ROW1 = ["2026-01-02 10:00:00.000", "POST", "/api/generate", "generate", "m2", "200", "20.0", "10", "51.0", "100.0"]
ROW2 = [
    "2026-01-02 11:00:00.000",
    "POST",
    "/api/generate",
    "generate",
    "m1",
    "200",
    "30.0",
    "10",
    "52.0",
    "100.0",
    "error: boom",
]


@pytest.mark.parametrize(
    ("args", "rows"),
    [
        ([], [ROW0, ROW1, ROW2]),
        (["--model", "m2"], [ROW1]),
        (["--errors"], [ROW2]),
        (["--since", "2026-01-02"], [ROW1, ROW2]),
        (["-n", "1"], [ROW2]),
    ],
)
def test_logs_table_filters(log_dir: Path, args: list[str], rows: list[list[str]]) -> None:
    result = CliRunner().invoke(cli, ["logs", "--log-dir", str(log_dir), *args])
    assert result.exit_code == 0 and result.stderr == ""
    table = cells(result.stdout)
    assert table[0] == HEADER and set(table[1][0]) == {"-"}
    assert table[2:] == rows


def test_logs_summary_table(log_dir: Path) -> None:
    result = CliRunner().invoke(cli, ["logs", "--log-dir", str(log_dir), "--summary"])
    assert result.exit_code == 0 and result.stderr == ""
    assert cells(result.stdout) == [
        ["model", "count", "errors", "ttft_p50_ms", "ttft_p95_ms", "tok_per_s_p50", "eval_tokens"],
        ["-----", "-----", "------", "-----------", "-----------", "-------------", "-----------"],
        ["m1", "2", "1", "20.0", "29.0", "51.0", "20"],
        ["m2", "1", "0", "20.0", "20.0", "51.0", "10"],
    ]


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
    assert (result.exit_code, result.stdout) == (2, "")
    assert result.stderr.splitlines()[-1] == f"Error: Invalid value for '--log-dir': Directory '{not_dir}' is a file."


@pytest.mark.parametrize("since", ["yesterday-ish", "99999999d", "9" * 400 + "w", "2026-13-01", "-1d", ""])
def test_logs_every_bad_since_is_a_usage_error_naming_the_option(log_dir: Path, since: str) -> None:
    result = CliRunner().invoke(cli, ["logs", "--log-dir", str(log_dir), "--since", since])
    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    (line,) = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert line.startswith("Error: Invalid value for '--since':")


def _summary_line(out: str, model: str) -> list[str]:
    return re.split(r"\s+", next(line for line in out.splitlines() if line.startswith(model)))


def test_logs_summary_covers_every_match_not_only_the_last_n(log_dir: Path) -> None:
    out = CliRunner().invoke(cli, ["logs", "--log-dir", str(log_dir), "--summary", "-n", "1"]).output
    assert _summary_line(out, "m1")[:3] == ["m1", "2", "1"]
    assert _summary_line(out, "m2")[:3] == ["m2", "1", "0"]


@pytest.mark.parametrize("fmt", ["--csv", "--json", "--jsonl"])
def test_logs_summary_in_machine_formats(log_dir: Path, fmt: str) -> None:
    result = CliRunner().invoke(cli, ["logs", "--log-dir", str(log_dir), "--summary", "-n", "1", fmt])
    assert result.exit_code == 0, result.output
    if fmt == "--csv":
        rows: list[dict] = list(csv.DictReader(io.StringIO(result.stdout)))
        header = ["model", "count", "errors", "ttft_p50_ms", "ttft_p95_ms", "tok_per_s_p50", "eval_tokens"]
        assert list(rows[0]) == header
        assert [(r["model"], r["count"], r["ttft_p50_ms"]) for r in rows] == [("m1", "2", "20.0"), ("m2", "1", "20.0")]
        return
    lines = result.stdout.splitlines()
    rows = json.loads(result.stdout) if fmt == "--json" else [json.loads(line) for line in lines]
    assert [(r["model"], r["count"], r["errors"], r["ttft_p50_ms"]) for r in rows] == [
        ("m1", 2, 1, 20.0),
        ("m2", 1, 0, 20.0),
    ]


def test_logs_summary_with_sqlite_stores_the_matching_records(log_dir: Path, tmp_path: Path) -> None:
    db = tmp_path / "i.db"
    args = ["logs", "--log-dir", str(log_dir), "--summary", "-n", "1", "--model", "m1", "--sqlite", str(db)]
    assert CliRunner().invoke(cli, args).exit_code == 0
    with sqlite3.connect(db) as conn:
        assert conn.execute("select count(*) from interactions").fetchone() == (2,)


needs_dev_full = pytest.mark.skipif(not Path("/dev/full").exists(), reason="no /dev/full")


@needs_dev_full
@pytest.mark.parametrize("flags", [[], ["--csv"], ["--json"], ["--jsonl"], ["--summary"], ["--summary", "--csv"]])
def test_logs_output_that_cannot_be_written(log_dir: Path, flags: list[str]) -> None:
    result = CliRunner().invoke(cli, ["logs", "--log-dir", str(log_dir), *flags, "-o", "/dev/full"])
    assert result.exit_code == 1
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert result.stderr.splitlines() == ["Error: /dev/full: cannot write: No space left on device"]


@needs_dev_full
def test_logs_stdout_that_cannot_be_written_as_a_subprocess(log_dir: Path) -> None:
    """stdout on a full device: one line, exit 1, and no second complaint from the interpreter's last flush."""
    with open("/dev/full", "w") as full:
        completed = subprocess.run(
            [str(Path(sys.executable).parent / "ollama-wire"), "logs", "--log-dir", str(log_dir), "--jsonl"],
            stdout=full,
            stderr=subprocess.PIPE,
            text=True,
            timeout=60,
        )
    assert completed.returncode == 1
    assert completed.stderr.splitlines() == ["Error: standard output: cannot write: No space left on device"]


def test_logs_on_a_missing_log_dir_says_where_logs_go(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    result = CliRunner().invoke(cli, ["logs", "--log-dir", str(missing)])
    assert result.exit_code == 0
    assert result.stdout == (
        f"no interactions: {missing} does not exist (the addon writes to logs/ollama_interactions relative to "
        "where mitmdump runs; use --log-dir)\n"
    )
    result = CliRunner().invoke(cli, ["logs", "--log-dir", str(missing), "--json"])
    assert result.exit_code == 0
    assert json.loads(result.stdout) == []
    assert result.stderr == (
        f"no interactions: {missing} does not exist (the addon writes to logs/ollama_interactions relative to "
        "where mitmdump runs; use --log-dir)\n"
    )


def test_logs_skips_a_half_written_line(log_dir: Path) -> None:
    last = sorted(log_dir.glob("*.jsonl"))[-1]
    cut_at = last.stat().st_size  # the newest-first reader names the line by its byte offset
    with last.open("a") as fh:
        fh.write('{"id": "cut-sho')
    result = CliRunner().invoke(cli, ["logs", "--log-dir", str(log_dir), "--jsonl"])
    assert result.exit_code == 0
    assert [json.loads(line)["id"] for line in result.stdout.splitlines()] == ["r0", "r1", "r2"]
    assert result.stderr == f"warning: {last}: byte {cut_at}: skipped a line that is not JSON\n"


def test_readme_documents_every_addon_option() -> None:
    from mitmproxy.test import taddons

    from analyzer.recorder.addons import build_addons

    with taddons.context(*build_addons()) as tctx:  # every addon the script loads declares its options
        declared = {name for name in tctx.options.keys() if name.startswith("ollama_")}  # noqa: SIM118 (11.0.2: not iterable)
    readme = (ROOT / "README.md").read_text()
    documented = set(re.findall(r"^\| `(ollama_\w+)` \|", readme, re.MULTILINE))
    assert declared and declared == documented


def test_cli_reference_is_up_to_date() -> None:
    """docs/cli.md is generated from --help: regenerate with `python docs/generate_cli.py`."""
    result = subprocess.run([sys.executable, str(ROOT / "docs" / "generate_cli.py"), "--check"], capture_output=True)
    assert result.returncode == 0, result.stderr.decode()


def test_error_lines_show_control_characters_escaped(tmp_path: Path) -> None:
    """An ``Error:`` line quoting a name (a file's, the traffic's) never sends a raw escape to the terminal."""
    from analyzer.cli.main import cli

    result = CliRunner().invoke(cli, ["findings", str(tmp_path / "gone\x1b]0;OWNED\x07")])
    assert result.exit_code == 1
    assert "gone\\x1b]0;OWNED\\x07" in result.output and "\x1b" not in result.output
