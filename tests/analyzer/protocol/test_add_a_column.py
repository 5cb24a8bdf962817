"""Adding a column is one declaration: in a copy of ``analyzer/`` with one column inserted in the middle of the
record, it flows through the log, CSV, SQLite, pandas, ``logs --summary`` (fast path still taken), report
loading, the OTel mapping and docs/record.md's table — and a log written before it existed still loads."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
ANCHOR = "    total_ms: float | None = column("
DECLARATION = (
    '    queue_ms: float | None = column(TIMING, "time the request waited in a queue (a test column)", unit="ms",'
    " views=(REPORT, SPAN))\n"
)

# Runs in a subprocess whose ``analyzer`` is the copy; prints what each view made of the new column.
PROBE = r"""
import csv, io, json, sqlite3, sys
from pathlib import Path
from click.testing import CliRunner

import analyzer
from analyzer.cli.main import cli
from analyzer.export.mapping import span_data
from analyzer.protocol.record import COLUMNS, InteractionRecord, record_from_row
from analyzer.report.load import load_requests
from analyzer.store import digest
from analyzer.store.log import InteractionLog, read_log
from analyzer.store.tables import records_to_frame, write_csv, write_sqlite

work, docs, old_log = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3])
out = {"analyzer": analyzer.__file__, "columns": list(COLUMNS)}
record = InteractionRecord(
    id="r1", source="proxy", started_at="2026-12-01T10:00:00.000000Z", method="POST", path="/api/chat", status=200,
    api="ollama", kind="chat", model="m:1b", stream=True, messages=[{"role": "user", "content": "hi"}],
    ttft_ms=120.0, total_ms=900.0, eval_count=40, eval_tokens_per_s=50.0, queue_ms=12.5,
)
log = work / "log"
InteractionLog(log).append(record)
line = next(log.glob("*.jsonl")).read_text().splitlines()[0]
out["log_keys"] = list(json.loads(line))
out["log_value"] = read_log(log)[0].queue_ms

text = io.StringIO()
write_csv([record], text)
(row,) = csv.DictReader(io.StringIO(text.getvalue()))
out["csv_value"] = row["queue_ms"]
out["csv_round_trip"] = record_from_row(row) == record

write_sqlite([record], work / "db.sqlite")
with sqlite3.connect(work / "db.sqlite") as db:
    out["sqlite_type"] = {r[1]: r[2] for r in db.execute("PRAGMA table_info(interactions)")}["queue_ms"]
    out["sqlite_value"] = db.execute("SELECT queue_ms FROM interactions").fetchone()[0]

frame = records_to_frame([record])
out["pandas"] = [str(frame["queue_ms"].dtype), float(frame["queue_ms"].iloc[0])]

before = (digest.DECODED.fast, digest.DECODED.full)
result = CliRunner().invoke(cli, ["logs", "--log-dir", str(log), "--summary", "--json"])
out["summary"] = json.loads(result.output)
out["summary_paths"] = [digest.DECODED.fast - before[0], digest.DECODED.full - before[1]]

(request,), _ = load_requests([log])
out["report_value"] = request.queue_ms

out["span"] = span_data(record).attributes.get("ollama.queue")

sys.path.insert(0, docs)
import generate_record
out["docs_row"] = [l for l in generate_record.render_columns().splitlines() if l.startswith("| `queue_ms` |")]

before = (digest.DECODED.fast, digest.DECODED.full)
old_records = read_log(old_log)
result = CliRunner().invoke(cli, ["logs", "--log-dir", str(old_log), "--summary", "--json"])
out["old"] = {
    "records": len(old_records),
    "queue_ms": sorted({str(r.queue_ms) for r in old_records}),
    "summary_ok": result.exit_code == 0,
    "paths": [digest.DECODED.fast - before[0], digest.DECODED.full - before[1]],
    "report": len(load_requests([old_log])[0]),
}
print(json.dumps(out))
"""


def test_one_declaration_flows_through_every_view(tmp_path: Path) -> None:
    copy = tmp_path / "tree"
    shutil.copytree(ROOT / "analyzer", copy / "analyzer", ignore=shutil.ignore_patterns("__pycache__"))
    record_py = copy / "analyzer" / "protocol" / "record.py"
    source = record_py.read_text(encoding="utf-8")
    assert source.count(ANCHOR) == 1
    record_py.write_text(source.replace(ANCHOR, DECLARATION + ANCHOR), encoding="utf-8")  # the one change
    old_log = tmp_path / "old-log"
    shutil.copytree(ROOT / "tests" / "data" / "old-logs" / "d3d0b38", old_log)

    done = subprocess.run(
        [sys.executable, "-c", PROBE, str(tmp_path), str(ROOT / "docs"), str(old_log)],
        cwd=copy,
        env={"PYTHONPATH": str(copy), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout)

    assert out["analyzer"].startswith(str(copy))
    columns = out["columns"]
    assert columns.index("queue_ms") == columns.index("total_ms") - 1  # in the middle, where it was declared
    assert out["log_keys"] == columns and out["log_value"] == 12.5
    assert out["csv_value"] == "12.5" and out["csv_round_trip"] is True
    assert (out["sqlite_type"], out["sqlite_value"]) == ("REAL", 12.5)
    assert out["pandas"] == ["float64", 12.5]
    assert out["summary"] == [
        {
            "model": "m:1b",
            "count": 1,
            "errors": 0,
            "ttft_p50_ms": 120.0,
            "ttft_p95_ms": 120.0,
            "tok_per_s_p50": 50.0,
            "eval_tokens": 40,
        }
    ]
    assert out["summary_paths"] == [1, 0]  # the fast path, not json.loads
    assert out["report_value"] == 12.5
    assert out["span"] == 0.0125  # ms → seconds, as every ms column
    assert len(out["docs_row"]) == 1 and "time the request waited in a queue" in out["docs_row"][0]
    # a log written before the column existed: every record loads (column empty), summary and report too
    assert out["old"] == {"records": 24, "queue_ms": ["None"], "summary_ok": True, "paths": [24, 0], "report": 24}
