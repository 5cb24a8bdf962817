"""Output flags shared by every command that prints records (``logs``, ``analyze``)."""

from __future__ import annotations

import contextlib
import functools
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, TextIO

import click

from analyzer.record import InteractionRecord
from analyzer.tables import write_csv, write_json, write_jsonl, write_sqlite

FORMATS = ("table", "csv", "jsonl", "json")


def output_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """Add ``--csv/--jsonl/--json`` (one ``fmt`` parameter), ``-o/--output FILE`` and ``--sqlite FILE``."""

    @click.option("--csv", "fmt", flag_value="csv", help="Every record column as CSV (flags joined with ';').")
    @click.option("--jsonl", "fmt", flag_value="jsonl", help="One JSON record per line (the log's format).")
    @click.option("--json", "fmt", flag_value="json", help="One JSON array of records.")
    @click.option("--table", "fmt", flag_value="table", default=True, help="A readable table (default).")
    @click.option(
        "-o",
        "--output",
        type=click.Path(dir_okay=False, writable=True, path_type=Path),
        help="Write to FILE instead of standard output.",
    )
    @click.option(
        "--sqlite",
        "sqlite_path",
        type=click.Path(dir_okay=False, path_type=Path),
        help="Also insert the records into table 'interactions' of this SQLite file.",
    )
    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        return command(*args, **kwargs)

    return wrapper


@contextlib.contextmanager
def opened_output(output: Path | None) -> Iterator[TextIO]:
    """Standard output, or ``output`` opened for writing (a one-line error if it cannot be)."""
    if output is None:
        yield sys.stdout
        return
    try:
        handle = output.open("w", encoding="utf-8", newline="")
    except OSError as exc:
        raise click.ClickException(f"{output}: cannot write: {exc.strerror or exc}") from exc
    with handle:
        yield handle


STREAMING_FORMATS = ("csv", "jsonl")


def emit_records(
    records: Iterable[InteractionRecord],
    fmt: str,
    output: Path | None,
    sqlite_path: Path | None,
    *,
    table: Callable[[Sequence[InteractionRecord]], str],
) -> None:
    """Write records in the chosen format; ``table`` renders the default human view.

    CSV and JSON Lines are written as the records arrive; other formats (and ``--sqlite``) collect them first.
    """
    if sqlite_path is not None or fmt not in STREAMING_FORMATS:
        records = list(records)
    if sqlite_path is not None:
        try:
            write_sqlite(records, sqlite_path)
        except Exception as exc:  # sqlite3.Error, OSError: one line naming the file
            raise click.ClickException(f"{sqlite_path}: cannot write SQLite database: {exc}") from exc
    with opened_output(output) as out:
        if fmt == "csv":
            write_csv(records, out)
        elif fmt == "jsonl":
            write_jsonl(records, out)
        elif fmt == "json":
            write_json(records, out)
        else:
            out.write(table(list(records)))
