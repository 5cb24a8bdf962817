"""``ollama-wire report`` and ``findings``: sources, filters, outputs, and one-line errors for bad input."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
from click.testing import CliRunner
from report_records import clean_night, rec

from analyzer.cli.main import cli
from analyzer.store.log import InteractionLog
from analyzer.store.tables import write_csv


@pytest.fixture
def log_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "log"
    InteractionLog(directory).append_many(
        [*clean_night(), rec("cut", 400, done_reason="length"), rec("big", 410, model="qwen2.5", done_reason="length")]
    )
    return directory


def run(*args: str, cwd: Path | None = None) -> tuple[int, str, str]:
    runner = CliRunner()
    if cwd is None:
        result = runner.invoke(cli, list(args))
    else:
        with runner.isolated_filesystem(temp_dir=cwd):
            result = runner.invoke(cli, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_report_json_has_headline_and_findings(log_dir: Path) -> None:
    code, out, _ = run("report", str(log_dir), "--json")
    assert code == 0
    document = json.loads(out)
    assert document["headline"]["requests"] == 42
    assert [(f["code"], f["ids"]) for f in document["findings"]] == [("length_cutoff", ["cut", "big"])]


def test_filters_apply_before_the_analysis(log_dir: Path) -> None:
    _, out, _ = run("report", str(log_dir), "--json", "--model", "qwen2.5")
    assert [(f["code"], f["ids"]) for f in json.loads(out)["findings"]] == [("length_cutoff", ["big"])]
    _, out, _ = run("report", "--log-dir", str(log_dir), "--json", "--until", "2026-11-28T21:06:00Z")
    document = json.loads(out)
    assert document["findings"] == [] and document["headline"]["requests"] == 40
    _, out, _ = run("report", str(log_dir), "--json", "--since", "2026-11-28T21:06:45Z")
    assert [f["ids"] for f in json.loads(out)["findings"]] == [["big"]]


def test_csv_and_jsonl_sources_give_the_same_findings_once(log_dir: Path, tmp_path: Path) -> None:
    records = [*clean_night(), rec("cut", 400, done_reason="length")]
    csv_path = tmp_path / "export.csv"
    with csv_path.open("w", encoding="utf-8", newline="") as handle:
        write_csv(records, handle)
    _, out, _ = run("report", str(csv_path), str(log_dir), "--json")
    document = json.loads(out)
    assert document["headline"]["requests"] == 42  # the CSV's records are the log's: each id counts once
    assert document["findings"][0]["ids"] == ["cut", "big"]


def test_report_writes_one_private_page(log_dir: Path, tmp_path: Path) -> None:
    target = tmp_path / "night.html"
    target.write_text("old")
    target.chmod(0o644)
    code, _, err = run("report", str(log_dir), "-o", str(target))
    assert code == 0, err
    page = target.read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>") and page.count("<script") == 3  # plotly.js, the data, the page script
    assert "http://" not in page.split("<script>")[0] and 'src="http' not in page
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert "wrote" in err and "42 requests, 1 finding" in err


def test_report_default_output_and_source(log_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    work = tmp_path / "work"
    (work / "logs").mkdir(parents=True)
    log_dir.rename(work / "logs" / "ollama_interactions")
    monkeypatch.chdir(work)
    code, _, err = run("report")
    assert code == 0, err
    assert (work / "ollama-report.html").stat().st_size > 1_000_000


def test_findings_in_the_terminal(log_dir: Path) -> None:
    code, out, _ = run("findings", str(log_dir))
    assert code == 0
    assert out.splitlines()[0].startswith("42 requests, 0 errors, models: llama3.2, qwen2.5")
    assert "WARNING  length_cutoff: Responses stopped at the token limit" in out
    assert "records cut, big" in out
    clean = run("findings", str(log_dir), "--until", "2026-11-28T21:06:00Z")[1]
    assert "no findings" in clean


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["report", "/nonexistent/log"], "/nonexistent/log: no such file or directory"),
        (["findings", "--log-dir", "/nonexistent/dir"], "/nonexistent/dir: no such log directory"),
        (["report", "--since", "yesterday-ish"], "'yesterday-ish' is neither a duration"),
    ],
)
def test_bad_input_is_one_line(args: list[str], message: str) -> None:
    code, _, err = run(*args)
    assert code != 0
    assert message in err and "Traceback" not in err


def test_a_file_that_is_not_a_source(tmp_path: Path) -> None:
    junk = tmp_path / "notes.txt"
    junk.write_text("hello")
    code, _, err = run("report", str(junk), "--json")
    assert code == 1 and err.strip().splitlines()[-1].startswith(f"Error: {junk}: not a log")


def test_missing_default_log_says_where_to_look(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    code, _, err = run("findings")
    assert code == 1 and "logs/ollama_interactions does not exist" in err and "--log-dir" in err


def test_odd_lines_are_skipped_or_read_like_read_sources(tmp_path: Path) -> None:
    good = json.loads(rec("good", 0, done_reason="length").to_json())
    nulls = {**json.loads(rec("nulls", 5).to_json()), "flags": None, "request_bytes": None, "kind": None}
    lines = [json.dumps(good), json.dumps(nulls), '{"id": "bad", "status": "two hundred"}', "not json", ""]
    path = tmp_path / "odd.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    code, out, err = run("report", str(path), "--json")
    assert code == 0
    document = json.loads(out)
    assert document["headline"]["requests"] == 2
    assert [(f["code"], f["ids"]) for f in document["findings"]] == [("length_cutoff", ["good"])]
    assert (
        f"{path}:3: skipped a line that is not a record" in err and f"{path}:4: skipped a line that is not JSON" in err
    )
