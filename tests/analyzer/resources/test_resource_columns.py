"""The resource columns travel through every output like the others: JSON types, CSV, SQLite (also an old table)."""

from __future__ import annotations

import csv
import io
import sqlite3
from pathlib import Path

from analyzer.protocol.record import COLUMNS, RESOURCE_COLUMNS, InteractionRecord, record_from_row, record_problem
from analyzer.store.tables import write_csv, write_sqlite

SAMPLED = dict(
    gpu_util_mean_pct=87.5, gpu_mem_max_mb=6012.3, power_mean_w=241.0, energy_j=12.25, joules_per_token=0.5,
    server_cpu_ms=310.0, server_rss_max_mb=1536.0,
)  # fmt: skip


def test_columns_are_together_and_numeric() -> None:
    first = COLUMNS.index(RESOURCE_COLUMNS[0])
    assert COLUMNS[first : first + len(RESOURCE_COLUMNS)] == RESOURCE_COLUMNS
    record = InteractionRecord(id="x", **SAMPLED).to_dict()
    assert record_problem(record) is None
    assert record_problem({**record, "energy_j": "12"}) == "energy_j is str"
    assert record_problem({**record, "gpu_util_mean_pct": True}) == "gpu_util_mean_pct is bool"
    assert record_problem({**record, "energy_j": 3}) is None


def test_csv_round_trip_keeps_them_and_empty_means_unsampled() -> None:
    out = io.StringIO()
    write_csv([InteractionRecord(id="a", **SAMPLED), InteractionRecord(id="b")], out)
    rows = list(csv.DictReader(io.StringIO(out.getvalue())))
    sampled, unsampled = (record_from_row(row) for row in rows)
    assert {name: getattr(sampled, name) for name in RESOURCE_COLUMNS} == SAMPLED
    assert all(getattr(unsampled, name) is None for name in RESOURCE_COLUMNS)


def test_sqlite_adds_the_columns_to_a_table_written_before_them(tmp_path: Path) -> None:
    db = tmp_path / "old.db"
    old_columns = [c for c in COLUMNS if c not in RESOURCE_COLUMNS]
    with sqlite3.connect(db) as connection:
        connection.execute(f"CREATE TABLE interactions ({', '.join(old_columns)})")
        connection.execute("INSERT INTO interactions (id) VALUES ('old')")
    connection.close()
    write_sqlite([InteractionRecord(id="new", **SAMPLED)], db)
    with sqlite3.connect(db) as connection:
        rows = dict(connection.execute("SELECT id, energy_j FROM interactions").fetchall())
    connection.close()
    assert rows == {"old": None, "new": 12.25}
