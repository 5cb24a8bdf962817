"""Logs written by older versions (before a column existed) keep loading: through ``logs``, ``logs --summary``
(its fast path, not the slow one) and the report, with the same results the writing version's own CLI gave.

tests/data/old-logs/ holds a log written by main before the schema was declared once (d3d0b38, 75 columns) and
one from before this round's columns (90cd392, 48 columns), with what that version printed for
``logs -n 0 --json``, ``logs --summary --json`` and ``report --json`` (see make_old_log.py there).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from analyzer.cli.main import cli
from analyzer.protocol.record import BY_NAME, COLUMNS, InteractionRecord
from analyzer.report.derive import to_request
from analyzer.report.load import load_requests
from analyzer.store import digest
from analyzer.store.log import read_log

OLD_LOGS = Path(__file__).resolve().parents[1] / "data" / "old-logs"
VERSIONS = ("d3d0b38", "90cd392")
# Headline figures that depend only on the records (findings and their categories may grow in later versions).
STABLE_HEADLINE = ("requests", "first", "last", "models", "tokens_in", "tokens_out", "sampled_requests", "energy_j")


@pytest.fixture(params=VERSIONS)
def old_log(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, Path]:
    version: str = request.param
    copy = tmp_path / version
    shutil.copytree(OLD_LOGS / version, copy)  # the summary cache is written beside the log: not into tests/data
    return version, copy


def expected(version: str, what: str) -> object:
    return json.loads((OLD_LOGS / f"{version}.{what}.json").read_text(encoding="utf-8"))


def test_the_old_logs_lack_columns_the_record_has_now() -> None:
    for version, count in (("d3d0b38", 75), ("90cd392", 48)):
        first = (OLD_LOGS / version / "2026-12-01.jsonl").read_text(encoding="utf-8").splitlines()[0]
        keys = list(json.loads(first))
        assert len(keys) == count and keys == [c for c in COLUMNS if c in keys]
    assert len(COLUMNS) > 48


def test_logs_reads_every_old_record_with_the_new_columns_at_their_defaults(old_log: tuple[str, Path]) -> None:
    version, log = old_log
    old_records = expected(version, "logs")
    assert isinstance(old_records, list) and len(old_records) == 24
    records = {r.id: r for r in read_log(log, warn=pytest.fail)}
    assert sorted(records) == sorted(r["id"] for r in old_records)
    for old in old_records:
        record = records[old["id"]]
        for name in COLUMNS:
            want = old[name] if name in old else BY_NAME[name].default_factory()
            assert getattr(record, name) == want, (record.id, name)

    result = CliRunner().invoke(cli, ["logs", "--log-dir", str(log), "-n", "0", "--json"])
    assert result.exit_code == 0, result.output
    assert [{k: r[k] for k in old} for r, old in zip(json.loads(result.output), old_records, strict=True)] == (
        old_records
    )


def test_summary_of_an_old_log_takes_the_fast_path_and_agrees(old_log: tuple[str, Path]) -> None:
    version, log = old_log
    before = (digest.DECODED.fast, digest.DECODED.full)
    result = CliRunner().invoke(cli, ["logs", "--log-dir", str(log), "--summary", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == expected(version, "summary")
    assert (digest.DECODED.fast - before[0], digest.DECODED.full - before[1]) == (24, 0)


def test_the_report_loads_an_old_log_as_from_its_full_records(old_log: tuple[str, Path]) -> None:
    version, log = old_log
    old_records = expected(version, "logs")
    assert isinstance(old_records, list)
    requests, unreadable = load_requests([log], warn=pytest.fail)
    assert unreadable == 0
    from_records = sorted(
        (to_request(InteractionRecord.from_dict(old)) for old in old_records), key=lambda r: r.start if r else 0
    )
    assert requests == from_records

    result = CliRunner().invoke(cli, ["report", str(log), "--json"])
    assert result.exit_code == 0, result.output
    headline, old_headline = json.loads(result.output)["headline"], expected(version, "report")["headline"]  # type: ignore[index]
    assert {k: headline[k] for k in STABLE_HEADLINE} == {k: old_headline[k] for k in STABLE_HEADLINE}


def test_report_loading_reads_whole_files_and_odd_lines_as_before(tmp_path: Path) -> None:
    """The report decodes a file in one pass when every line is one record, else line by line: the same requests
    and warnings either way (blank lines, a glued line, a bad line, an unterminated last line)."""
    lines = (OLD_LOGS / "d3d0b38" / "2026-12-01.jsonl").read_text(encoding="utf-8").splitlines()
    clean = tmp_path / "clean.jsonl"
    clean.write_text("\n".join(lines), encoding="utf-8")  # no newline after the last record: still read
    requests, _ = load_requests([clean], warn=pytest.fail)
    assert len(requests) == len(lines)

    odd = tmp_path / "odd.jsonl"
    odd.write_text("\n".join([lines[0], "", lines[1] + lines[2], '{"id": 5}', *lines[3:6], "  "]) + "\n")
    warnings: list[str] = []
    requests, _ = load_requests([odd], warn=warnings.append)
    assert sorted(r.id for r in requests) == sorted(json.loads(line)["id"] for line in [lines[0], *lines[3:6]])
    assert [w.split(":")[1] for w in warnings] == ["3", "4"]
