"""The record's one declaration, and what is derived from it: JSON checks, CSV, SQLite, pandas, the summary fast
path, the report's columns and requests, the OTel span attributes."""

from __future__ import annotations

import csv
import io
import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from analyzer.export import mapping
from analyzer.export import semconv as sc
from analyzer.protocol import record as schema
from analyzer.protocol.record import (
    BY_NAME,
    COLUMNS,
    GROUPS,
    REPORT,
    SCHEMA,
    SPAN,
    SUMMARY,
    VIEWS,
    Column,
    InteractionRecord,
    columns_in,
    record_from_row,
    record_problem,
    scalar_row,
)
from analyzer.report.derive import CARRIED, DerivedColumns, to_request
from analyzer.report.load import ReportColumns, load_requests
from analyzer.store import digest
from analyzer.store.log import InteractionLog
from analyzer.store.tables import records_to_frame, write_csv, write_sqlite


def sample_value(spec: Column, index: int) -> Any:
    """A value of the column's declared type that differs from its default and between columns."""
    if spec.name == "started_at":
        return "2026-12-01T10:00:00.250000Z"
    if spec.value_type is bool:
        return not spec.default_factory()
    if spec.value_type is int:
        return 400 + index
    if spec.value_type is float:
        return 10.5 + index
    if spec.value_type is list:
        return ["redacted", f"flag_{index}"] if spec.item is str else [{"role": "user", "content": f"c{index}"}]
    return f'{spec.name} "quoted", comma {index}'


def full_record() -> InteractionRecord:
    """A record with every column set to a non-default value."""
    return InteractionRecord(**{spec.name: sample_value(spec, i) for i, spec in enumerate(SCHEMA)})


def test_every_column_is_declared_with_a_group_a_meaning_and_known_views() -> None:
    assert tuple(f for f in InteractionRecord.__dataclass_fields__) == COLUMNS
    for spec in SCHEMA:
        assert spec.group in GROUPS, spec.name
        assert spec.meaning and "\n" not in spec.meaning, spec.name
        assert spec.views <= set(VIEWS), spec.name
    assert {c.name for c in columns_in(SUMMARY)} >= {"started_at", "model", "ttft_ms", "eval_count"}


def test_types_come_from_the_annotations() -> None:
    assert (BY_NAME["status"].value_type, BY_NAME["status"].optional) == (int, True)
    assert (BY_NAME["chunks"].value_type, BY_NAME["chunks"].optional) == (int, False)
    assert BY_NAME["opt_temperature"].value_type is float  # no "_ms"-style suffix: the annotation decides
    assert BY_NAME["opt_keep_alive"].value_type is str
    assert BY_NAME["opt_tools"].value_type is int
    assert BY_NAME["remote"].value_type is bool
    assert (BY_NAME["flags"].value_type, BY_NAME["flags"].item) == (list, str)
    assert (BY_NAME["messages"].value_type, BY_NAME["messages"].item) == (list, None)


def test_a_column_without_a_declaration_is_refused() -> None:
    from dataclasses import dataclass

    @dataclass
    class Undeclared:
        name: str = ""

    with pytest.raises(TypeError, match=r"Undeclared\.name"):
        schema._columns_of(Undeclared)
    with pytest.raises(ValueError, match="unknown column group"):
        schema.column("nonsense", "x")
    with pytest.raises(ValueError, match="unknown column views"):
        schema.column(schema.TIMING, "x", views=("nonsense",))


@pytest.mark.parametrize("spec", SCHEMA, ids=lambda c: c.name)
def test_record_problem_checks_each_column_by_its_declared_type(spec: Column) -> None:
    data = full_record().to_dict()
    assert record_problem(data) is None
    wrong: Any = {str: 1, int: "1", float: "1.5", bool: 1, list: "x"}[spec.value_type]
    assert record_problem({**data, spec.name: wrong}) == f"{spec.name} is {type(wrong).__name__}"
    if spec.value_type is not bool:
        assert record_problem({**data, spec.name: True}) == f"{spec.name} is bool"
    assert record_problem({**data, spec.name: None}) is None  # unknown is always allowed


def test_json_csv_sqlite_and_pandas_keep_every_column(tmp_path: Path) -> None:
    record = full_record()
    assert InteractionRecord.from_dict(json.loads(record.to_json())) == record

    out = io.StringIO()
    write_csv([record], out)
    (row,) = csv.DictReader(io.StringIO(out.getvalue()))
    assert record_from_row(row) == record

    database = tmp_path / "records.db"
    write_sqlite([record], database)
    with sqlite3.connect(database) as connection:
        declared = {name: kind for _, name, kind, *_ in connection.execute("PRAGMA table_info(interactions)")}
        stored = dict(zip(COLUMNS, connection.execute("SELECT * FROM interactions").fetchone(), strict=True))
    assert declared == {c.name: c.sqlite_type for c in SCHEMA}
    assert stored == {name: int(v) if isinstance(v, bool) else v for name, v in scalar_row(record).items()}

    frame = records_to_frame([record])
    assert list(frame.columns) == list(COLUMNS)
    for spec in SCHEMA:
        if spec.name != "started_at":
            assert str(frame[spec.name].dtype) == spec.pandas_dtype, spec.name
        value = frame[spec.name].iloc[0]
        assert (value.isoformat() if spec.name == "started_at" else value) == (
            "2026-12-01T10:00:00.250000+00:00" if spec.name == "started_at" else getattr(record, spec.name)
        ), spec.name


def test_an_empty_csv_row_gives_the_declared_defaults() -> None:
    assert record_from_row(dict.fromkeys(COLUMNS, "")) == InteractionRecord()


def test_summary_fast_path_reads_a_full_record_and_agrees_with_a_full_decode() -> None:
    record = full_record()
    record.model = 'm\\"odel'  # escapes inside a string the summary keeps
    line = record.to_json().encode() + b"\n"
    shuffled = json.dumps(dict(reversed(list(record.to_dict().items())))).encode() + b"\n"  # any key order
    before = (digest.DECODED.fast, digest.DECODED.full)
    rows, problems = digest.decode_lines(line * 2 + shuffled)
    assert (digest.DECODED.fast - before[0], digest.DECODED.full - before[1]) == (3, 0)
    assert problems == []
    assert rows == [digest.fields_of(record)] * 3


@pytest.mark.parametrize("spec", SCHEMA, ids=lambda c: c.name)
def test_summary_fast_path_refuses_what_record_problem_refuses(spec: Column) -> None:
    data = full_record().to_dict()
    wrong: Any = {str: 1, int: "1", float: "1.5", bool: 1, list: "x"}[spec.value_type]
    line = json.dumps({**data, spec.name: wrong}).encode() + b"\n"
    before = digest.DECODED.full
    rows, problems = digest.decode_lines(full_record().to_json().encode() + b"\n" + line, first_number=7)
    assert digest.DECODED.full == before + 1  # the bad line took the slow path, and was skipped as read_log does
    assert len(rows) == 1 and problems == [
        f"8: skipped a line that is not a record ({spec.name} is {type(wrong).__name__})"
    ]


def test_the_summary_view_names_exactly_what_the_summary_reads() -> None:
    read: set[str] = set()

    class Spy:
        def __getattr__(self, name: str) -> None:
            read.add(name)
            return None

    digest._columns([Spy()], [None])
    assert read | {"started_at"} == {c.name for c in columns_in(SUMMARY)}


def test_report_columns_and_requests_follow_the_report_view(tmp_path: Path) -> None:
    assert ReportColumns.__struct_fields__ == tuple(c.name for c in columns_in(REPORT))
    derived = set(DerivedColumns.__dataclass_fields__)
    assert {c.name for c in CARRIED} == {c.name for c in columns_in(REPORT)} - derived - {"system", "messages"}
    record = full_record()
    InteractionLog(tmp_path).append(record)
    (request,), unreadable = load_requests([tmp_path])
    assert unreadable == 0
    for spec in CARRIED:
        assert getattr(request, spec.name) == getattr(record, spec.name), spec.name
    assert request == to_request(record)  # the full record and the decoded columns give the same request
    assert request.load_ms == record.load_duration_ms and request.tool_calls is True


def test_span_attributes_follow_the_span_view() -> None:
    record = full_record()
    attributes = mapping.span_data(record).attributes
    for spec in columns_in(SPAN):
        value = getattr(record, spec.name)
        expected = mapping.seconds(value) if spec.unit == "ms" else value
        assert attributes[sc.column_attribute(spec.name, spec.unit)] == expected, spec.name
    named = {
        "load_duration_ms": sc.OLLAMA_LOAD_DURATION,
        "total_duration_ms": sc.OLLAMA_TOTAL_DURATION,
        "prompt_eval_duration_ms": sc.OLLAMA_PROMPT_EVAL_DURATION,
        "eval_duration_ms": sc.OLLAMA_EVAL_DURATION,
        "gap_p95_ms": sc.OLLAMA_GAP_P95,
        "flags": sc.OLLAMA_FLAGS,
        "api": sc.OLLAMA_API,
        "path": sc.OLLAMA_PATH,
        "source": sc.OLLAMA_SOURCE,
        "chunks": sc.OLLAMA_CHUNKS,
        "complete": sc.OLLAMA_COMPLETE,
        "ttft_thinking_ms": sc.OLLAMA_TTFT_THINKING,
        "ttft_content_ms": sc.OLLAMA_TTFT_CONTENT,
        "thinking_ms": sc.OLLAMA_THINKING,
        "ttft_tool_ms": sc.OLLAMA_TTFT_TOOL,
        "remote": sc.OLLAMA_REMOTE,
    }
    assert {name: sc.column_attribute(name, BY_NAME[name].unit) for name in named} == named
    assert {c.name for c in columns_in(SPAN)} == set(named)


def test_docs_record_md_column_tables_are_generated_from_the_declaration() -> None:
    """docs/record.md's tables come from the declaration: regenerate with `python docs/generate_record.py`."""
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[3]
    result = subprocess.run(
        [sys.executable, str(root / "docs" / "generate_record.py"), "--check"], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    sys.path.insert(0, str(root / "docs"))
    try:
        import generate_record
    finally:
        sys.path.remove(str(root / "docs"))
    document = (root / "docs" / "record.md").read_text(encoding="utf-8")
    for spec in SCHEMA:
        assert f"| `{spec.name}` |" in document, spec.name
    stale = document.replace("| `ttft_ms` |", "| `ttft_old_ms` |")
    assert generate_record.render(stale) == document  # a stale table is rewritten, prose untouched
