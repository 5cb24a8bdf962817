"""Output flags shared by every command that prints records (``logs``, ``analyze``), and the writing itself.

Every write failure (``-o /dev/full``, a full disk, a closed pipe) ends as one line naming the file.
"""

from __future__ import annotations

import functools
import os
import re
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, TextIO

import click

from analyzer.protocol.record import InteractionRecord
from analyzer.protocol.untrusted import for_terminal
from analyzer.store.tables import write_csv, write_json, write_jsonl, write_rows, write_sqlite

FORMATS = ("table", "csv", "csv-raw", "jsonl", "json")
STREAMING_FORMATS = ("csv", "csv-raw", "jsonl")
FILE_FORMATS = ("csv", "csv-raw", "jsonl", "json")  # every format but the table
STDOUT_NAME = "standard output"


# ``FILE:LINE: text`` (forward readers) or ``FILE: byte OFFSET: text`` (the newest-first tail reader)
_LINE_WARNING = re.compile(r"^(?P<file>.+?)(?::(?P<line>\d+)|: byte (?P<byte>\d+)): (?P<text>.*)$")


def note(message: str) -> None:
    """One line on standard error (``warning: …``, ``error: …``): escaped for the terminal, since warnings
    quote file names and traffic (``analyzer.protocol.untrusted``)."""
    click.echo(for_terminal(message), err=True)


def condense_warnings(messages: Iterable[str], *, per_file: int = 3) -> list[str]:
    """Warnings about lines of a file (``FILE:LINE: text`` or ``FILE: byte N: text``): the first few as they are,
    the rest of that file folded into one line with a count, so a file full of junk gives a few lines, not
    thousands."""
    out: list[str] = []
    seen: dict[str, int] = {}
    folded: dict[str, list[int]] = {}
    unit: dict[str, str] = {}
    for message in messages:
        match = _LINE_WARNING.match(message)
        if match is None:
            out.append(message)
            continue
        name = match.group("file")
        seen[name] = seen.get(name, 0) + 1
        if seen[name] <= per_file:
            out.append(message)
        else:
            where = match.group("line") or match.group("byte")
            unit[name] = "lines" if match.group("line") else "bytes"
            folded.setdefault(name, []).append(int(where))
    for name, places in folded.items():
        span = f"{unit[name]} {min(places)}-{max(places)}"
        out.append(f"{name}: skipped {len(places)} more line(s) that are not records ({span})")
    return out


def output_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """Add ``--csv/--jsonl/--json`` (one ``fmt`` parameter), ``-o/--output FILE`` and ``--sqlite FILE``."""

    @click.option(
        "--csv",
        "fmt",
        flag_value="csv",
        help="Every record column as CSV (flags joined with ';'). Safe to open in a spreadsheet: a cell starting "
        "with = + - @ TAB or CR (a formula) gets a ' prefix; this project's CSV reader removes it.",
    )
    @click.option(
        "--csv-raw", "fmt", flag_value="csv-raw", help="As --csv, every cell exactly as recorded (no ' prefix)."
    )
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


class _SourceFailed(Exception):
    """An OSError raised while *producing* records, kept apart from errors writing them."""

    def __init__(self, error: OSError) -> None:
        super().__init__(str(error))
        self.error = error


def _guarded(records: Iterable[InteractionRecord]) -> Iterator[InteractionRecord]:
    iterator = iter(records)
    while True:
        try:
            record = next(iterator)
        except StopIteration:
            return
        except OSError as exc:
            raise _SourceFailed(exc) from exc
        yield record


def _silence_stdout() -> None:
    """After stdout failed: point it at /dev/null so the interpreter's final flush cannot fail again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):
        pass  # not a real file descriptor (a test runner's buffer): nothing to protect


def write_output(output: Path | None, write: Callable[[TextIO], object]) -> None:
    """Call ``write`` with standard output or ``output`` opened for writing (opened before ``write`` runs).

    Any OSError opening, writing or closing becomes one line: ``Error: FILE: cannot write: …``.
    """
    name = STDOUT_NAME if output is None else str(output)
    try:
        if output is None:
            write(sys.stdout)
            sys.stdout.flush()
        else:
            with output.open("w", encoding="utf-8", newline="") as handle:
                write(handle)
    except _SourceFailed as failed:
        raise failed.error from None
    except OSError as exc:
        if output is None:
            _silence_stdout()
        raise click.ClickException(f"{name}: cannot write: {exc.strerror or exc}") from exc


def save_sqlite(records: Sequence[InteractionRecord], sqlite_path: Path) -> None:
    """Insert ``records`` into ``sqlite_path`` (one-line error naming the file if that fails)."""
    try:
        write_sqlite(records, sqlite_path)
    except Exception as exc:  # sqlite3.Error, OSError: one line naming the file
        raise click.ClickException(f"{sqlite_path}: cannot write SQLite database: {exc}") from exc


def emit_records(
    records: Iterable[InteractionRecord],
    fmt: str,
    output: Path | None,
    sqlite_path: Path | None,
    *,
    table: Callable[[Sequence[InteractionRecord]], str],
) -> None:
    """Write records in the chosen format; ``table`` renders the default human view.

    CSV and JSON Lines are written as the records arrive, in the order given. Other formats (and any
    format with ``--sqlite``) collect them first and write them in ``started_at`` order.
    """

    def write(out: TextIO) -> None:
        rows: Iterable[InteractionRecord] = _guarded(records)
        if sqlite_path is not None or fmt not in STREAMING_FORMATS:
            rows = sorted(rows, key=lambda r: r.started_at)
        if sqlite_path is not None:
            save_sqlite(list(rows), sqlite_path)
        if fmt in ("csv", "csv-raw"):
            write_csv(rows, out, raw=fmt == "csv-raw")
        elif fmt == "jsonl":
            write_jsonl(rows, out)
        elif fmt == "json":
            write_json(rows, out)
        else:
            out.write(table(list(rows)))

    write_output(output, write)


def emit_rows(
    rows: Sequence[dict[str, Any]],
    columns: Sequence[str],
    fmt: str,
    output: Path | None,
    *,
    table: Callable[[], str],
) -> None:
    """Plain dict rows (a summary) as CSV, JSON Lines or a JSON array; ``table`` renders the default view."""

    def write(out: TextIO) -> None:
        if fmt in FILE_FORMATS:
            write_rows(rows, columns, "csv" if fmt == "csv-raw" else fmt, out, raw=fmt == "csv-raw")
        else:
            out.write(table())

    write_output(output, write)
