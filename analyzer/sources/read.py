"""SOURCE arguments → records: log directories, JSONL/CSV files, capture files and directories of captures."""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import Protocol, TypeVar

from analyzer.pcap.analyze import DEFAULT_PORTS, AnalyzeOptions, analyze_capture
from analyzer.pcap.inputs import CAPTURE_SUFFIXES
from analyzer.protocol.record import InteractionRecord, record_from_row
from analyzer.protocol.untrusted import csv_uncell
from analyzer.store.log import LogError, iter_file_dicts, iter_log_dicts, log_files
from analyzer.store.select import counts_as_traffic, select

Warn = Callable[[str], None]
PCAP_MAGICS = (b"\xd4\xc3\xb2\xa1", b"\xa1\xb2\xc3\xd4", b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d", b"\x0a\x0d\x0d\x0a")


class Identified(Protocol):
    """What ``wanted_once`` needs of a row: a record, or the report's lighter column struct."""

    @property
    def id(self) -> str | None: ...

    @property
    def model(self) -> str | None: ...

    @property
    def source(self) -> str | None: ...


Row = TypeVar("Row", bound=Identified)


def wanted_once(
    rows: Iterable[Row], models: Sequence[str] | set[str], seen: set[str], include_replays: bool = False
) -> Iterator[Row]:
    """The rows of ``models`` (all when empty), each record id once: ``seen`` holds the ids met so far (pass the
    same set across sources, so a record found in a log and again in a CSV export counts once). Rows
    ``ollama-wire replay`` wrote only with ``include_replays`` (``counts_as_traffic``)."""
    for row in rows:
        if not counts_as_traffic(row.source, include_replays):
            continue
        if models and row.model not in models:
            continue
        if row.id:
            if row.id in seen:
                continue
            seen.add(row.id)
        yield row


class SourceError(Exception):
    """A SOURCE that names nothing readable; the message names it and says why."""


def _is_capture(path: Path) -> bool:
    if path.suffix.lower() in CAPTURE_SUFFIXES:
        return True
    try:
        with path.open("rb") as fh:
            return fh.read(4) in PCAP_MAGICS
    except OSError:
        return False


def _jsonl_records(path: Path, warn: Warn) -> Iterator[InteractionRecord]:
    try:
        for data in iter_file_dicts(path, warn=warn):
            yield InteractionRecord.from_dict(data)
    except LogError as exc:
        raise SourceError(str(exc)) from exc


# The largest cell a record can hold: request bodies are read up to 32 MiB (a model name can be that long).
CSV_FIELD_LIMIT = 64 * 1024 * 1024


def _csv_records(path: Path, warn: Warn) -> Iterator[InteractionRecord]:
    try:
        fh = path.open(encoding="utf-8", errors="replace", newline="")
    except OSError as exc:
        raise SourceError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    csv.field_size_limit(max(csv.field_size_limit(), CSV_FIELD_LIMIT))
    with fh:
        reader = csv.DictReader(fh)
        try:
            if not reader.fieldnames or "started_at" not in reader.fieldnames:
                raise SourceError(f"{path}: not a CSV of interaction records (no started_at column)")
            for number, row in enumerate(reader, 2):
                try:
                    # --csv guarded formula-like cells with a ' (csv_cell); undo it so the text is exact again
                    yield record_from_row({name: csv_uncell(text) for name, text in row.items() if text is not None})
                except ValueError as exc:
                    warn(f"{path}:{number}: skipped a row ({exc})")
        except csv.Error as exc:
            raise SourceError(f"{path}: line {reader.line_num}: not readable as CSV ({exc})") from exc


def _capture_records(path: Path, ports: tuple[int, ...]) -> Iterator[InteractionRecord]:
    result = analyze_capture(path, AnalyzeOptions(ports=ports))
    if result.error:
        raise SourceError(result.error if result.error.startswith(str(path)) else f"{path}: {result.error}")
    yield from result.records


def iter_source_records(
    sources: Sequence[str | Path], *, warn: Warn | None = None, ports: tuple[int, ...] = DEFAULT_PORTS
) -> Iterator[InteractionRecord]:
    """Every record in ``sources``, source by source. Raises :class:`SourceError` for a source it cannot read.

    A directory is an interaction log when it holds ``*.jsonl`` files, else a directory of captures.
    Lines or rows that are not records are skipped and reported through ``warn``.
    """
    report: Warn = warn or (lambda _message: None)
    for source in sources:
        path = Path(source)
        if path.is_dir():
            try:
                if log_files(path):
                    for data in iter_log_dicts(path, warn=report):
                        yield InteractionRecord.from_dict(data)
                    continue
            except LogError as exc:
                raise SourceError(str(exc)) from exc
            captures = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in CAPTURE_SUFFIXES)
            if not captures:
                raise SourceError(f"{path}: neither an interaction log (*.jsonl) nor a directory of captures")
            for capture in captures:
                yield from _capture_records(capture, ports)
        elif not path.exists():
            raise SourceError(f"{path}: no such file or directory")
        elif not path.is_file():
            raise SourceError(f"{path}: not a regular file")
        elif path.suffix.lower() == ".jsonl":
            yield from _jsonl_records(path, report)
        elif path.suffix.lower() == ".csv":
            yield from _csv_records(path, report)
        elif _is_capture(path):
            yield from _capture_records(path, ports)
        else:
            raise SourceError(f"{path}: not a log (.jsonl), a CSV of records or a packet capture")


def read_sources(
    sources: Sequence[str | Path],
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    models: Sequence[str] = (),
    warn: Warn | None = None,
    ports: tuple[int, ...] = DEFAULT_PORTS,
    include_replays: bool = False,
) -> list[InteractionRecord]:
    """The records of every source within [since, until) and of the given models (all when empty), oldest
    first, each record id once (a record found in a log and again in a CSV export counts once). ``ports``: the
    server ports whose traffic a capture is analyzed for. Records ``ollama-wire replay`` wrote only with
    ``include_replays``."""
    records = iter_source_records(sources, warn=warn, ports=ports)
    unique = list(wanted_once(records, set(models), set(), include_replays))
    return select(unique, since=since, until=until, include_replays=include_replays)
