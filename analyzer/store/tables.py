"""Records as tables: pandas DataFrames, CSV, JSON Lines, SQLite, per-model summaries, text tables."""

from __future__ import annotations

import csv
import io
import json
import sqlite3
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from analyzer.protocol.record import COLUMNS, LIST_COLUMNS, SCHEMA, InteractionRecord, scalar_row
from analyzer.protocol.untrusted import csv_cell, terminal_cell
from analyzer.store.digest import fields_of, summarize

if TYPE_CHECKING:
    import pandas as pd

# The columns of the default human-readable listing.
LISTING_COLUMNS = (
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
)


def records_to_frame(records: Iterable[InteractionRecord]) -> pd.DataFrame:
    """A DataFrame with one row per record and exactly the record's columns, in order.

    ``started_at`` becomes a UTC timestamp; every other column gets its declared dtype (``Column.pandas_dtype``:
    nullable integers and booleans, floats, text); list columns (``messages``, ``tool_calls``, ``flags``) stay
    Python lists.
    """
    import pandas as pd  # imported here: pandas costs ~0.4 s of start-up that the CLIs do not need

    frame = pd.DataFrame([r.to_dict() for r in records], columns=list(COLUMNS))
    frame = frame.astype({c.name: c.pandas_dtype for c in SCHEMA if c.name != "started_at"})
    frame["started_at"] = pd.to_datetime(frame["started_at"], utc=True, format="ISO8601")
    return frame


def spreadsheet_safe(row: dict[str, Any]) -> dict[str, Any]:
    """A CSV row whose text cells a spreadsheet will not run as formulas (``analyzer.protocol.untrusted.csv_cell``)."""
    return {name: csv_cell(value) for name, value in row.items()}


def write_csv(records: Iterable[InteractionRecord], out: TextIO, *, raw: bool = False) -> int:
    """Every column, list columns flattened (``flags`` joined with ``;``). Returns rows written.

    Cells that a spreadsheet would read as a formula get a ``'`` prefix (the OWASP rule; the project's CSV
    reader removes it again) unless ``raw``.
    """
    writer = csv.DictWriter(out, fieldnames=list(COLUMNS), lineterminator="\n")
    writer.writeheader()
    count = 0
    for record in records:
        row = scalar_row(record)
        writer.writerow(row if raw else spreadsheet_safe(row))
        count += 1
    return count


def write_jsonl(records: Iterable[InteractionRecord], out: TextIO) -> int:
    """One JSON object per line, the interaction log's own format."""
    count = 0
    for record in records:
        out.write(record.to_json() + "\n")
        count += 1
    return count


def write_json(records: Iterable[InteractionRecord], out: TextIO) -> int:
    """One JSON array of records."""
    items = [r.to_dict() for r in records]
    json.dump(items, out, ensure_ascii=False, indent=2)
    out.write("\n")
    return len(items)


def write_sqlite(records: Iterable[InteractionRecord], path: Path) -> int:
    """Insert (or replace, by ``id``) records into table ``interactions`` of a SQLite database (each column with
    its declared type: ``Column.sqlite_type``)."""
    columns = ", ".join(f'"{c.name}" {c.sqlite_type}' + (" PRIMARY KEY" if c.name == "id" else "") for c in SCHEMA)
    placeholders = ", ".join("?" for _ in COLUMNS)
    connection = sqlite3.connect(path)
    count = 0
    try:
        with connection:
            connection.execute(f"CREATE TABLE IF NOT EXISTS interactions ({columns})")
            # A database written by an older version lacks the newer columns: add them (empty for old rows).
            present = {row[1] for row in connection.execute("PRAGMA table_info(interactions)")}
            for spec in SCHEMA:
                if spec.name not in present:
                    connection.execute(f'ALTER TABLE interactions ADD COLUMN "{spec.name}" {spec.sqlite_type}')
            names = ", ".join(f'"{name}"' for name in COLUMNS)
            for record in records:
                row = scalar_row(record)
                values = [row[name] for name in COLUMNS]
                connection.execute(f"INSERT OR REPLACE INTO interactions ({names}) VALUES ({placeholders})", values)
                count += 1
    finally:
        connection.close()
    return count


def _rate(record: InteractionRecord) -> float | None:
    return record.eval_tokens_per_s if record.eval_tokens_per_s is not None else record.wire_tokens_per_s


def listing_rows(records: Sequence[InteractionRecord]) -> list[dict[str, Any]]:
    """The short human listing: one dict per record with LISTING_COLUMNS."""
    rows = []
    for r in records:
        rows.append(
            {
                "started_at": r.started_at[:23].replace("T", " "),
                "method": r.method,
                "path": r.path,
                "kind": r.kind,
                "model": r.model or "",
                "status": "" if r.status is None else r.status,
                "ttft_ms": _fmt(r.ttft_ms),
                "thinking_ms": _fmt(r.thinking_ms),
                "eval_count": "" if r.eval_count is None else r.eval_count,
                "tok_per_s": _fmt(_rate(r)),
                "total_ms": _fmt(r.total_ms),
                "flags": ";".join(r.flags) + (f" error: {r.error}" if r.error else ""),
            }
        )
    return rows


def _fmt(value: float | None, digits: int = 1) -> str:
    return "" if value is None else f"{value:.{digits}f}"


SUMMARY_COLUMNS = ("model", "count", "errors", "ttft_p50_ms", "ttft_p95_ms", "tok_per_s_p50", "eval_tokens")


def summary_stats(records: Sequence[InteractionRecord]) -> list[dict[str, Any]]:
    """Per model (SUMMARY_COLUMNS): count, errors, TTFT p50/p95 (ms), median tokens/s, tokens generated.

    Numbers, rounded to 0.1; None where nothing was measured. One dict per model, by model name.
    (``analyzer.store.digest.summarize`` does the counting; it also serves the log's cached fast path.)
    """
    return summarize(fields_of(r) for r in records)


def summary_rows(records: Sequence[InteractionRecord]) -> list[dict[str, Any]]:
    """:func:`summary_stats` formatted for a text table (one decimal, empty where nothing was measured)."""
    return format_summary(summary_stats(records))


def format_summary(stats: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Summary dicts (``summary_stats``/``digest.summarize``) formatted for a text table."""

    def cell(value: Any) -> Any:
        if value is None:
            return ""
        return _fmt(value) if isinstance(value, float) else value

    return [{name: cell(value) for name, value in row.items()} for row in stats]


def write_rows(
    rows: Iterable[dict[str, Any]], columns: Sequence[str], fmt: str, out: TextIO, *, raw: bool = False
) -> int:
    """Plain dict rows (a summary, say) as ``csv`` (header always written; spreadsheet-safe unless ``raw``, as
    :func:`write_csv`), ``jsonl`` or a ``json`` array."""
    items = list(rows)
    if fmt == "csv":
        writer = csv.DictWriter(out, fieldnames=list(columns), lineterminator="\n")
        writer.writeheader()
        writer.writerows(items if raw else (spreadsheet_safe(item) for item in items))
    elif fmt == "jsonl":
        for item in items:
            out.write(json.dumps(item, ensure_ascii=False) + "\n")
    elif fmt == "json":
        json.dump(items, out, ensure_ascii=False, indent=2)
        out.write("\n")
    else:
        raise ValueError(f"unknown row format {fmt!r}")
    return len(items)


TABLE_CELL_WIDTH = 60  # widest a text-table cell gets before it is cut with an ellipsis


def text_table(
    rows: Sequence[dict[str, Any]], columns: Sequence[str] | None = None, *, cell_width: int = TABLE_CELL_WIDTH
) -> str:
    """A plain aligned text table (no dependencies, no colours): header, rule, rows.

    Every cell is escaped for the terminal and cut to ``cell_width`` (``analyzer.protocol.untrusted``): model
    names, paths and errors come from traffic.
    """
    if not rows:
        return ""
    names = list(columns or rows[0].keys())
    cells = [[terminal_cell(row.get(n, ""), cell_width) for n in names] for row in rows]
    widths = [max(len(n), *(len(c[i]) for c in cells)) for i, n in enumerate(names)]
    out = io.StringIO()
    out.write("  ".join(n.ljust(w) for n, w in zip(names, widths, strict=True)).rstrip() + "\n")
    out.write("  ".join("-" * w for w in widths) + "\n")
    for c in cells:
        out.write("  ".join(v.ljust(w) for v, w in zip(c, widths, strict=True)).rstrip() + "\n")
    return out.getvalue()


__all__ = [
    "LISTING_COLUMNS",
    "LIST_COLUMNS",
    "SUMMARY_COLUMNS",
    "format_summary",
    "listing_rows",
    "records_to_frame",
    "spreadsheet_safe",
    "summary_rows",
    "summary_stats",
    "text_table",
    "write_csv",
    "write_json",
    "write_jsonl",
    "write_rows",
    "write_sqlite",
]
