"""Sources → the report's requests, fast enough for months of history.

A report over a 90-day log (200,000 records, ~210 MB) needs per record a few dozen scalars and the prompt's size,
not the replies and full texts that make up most of each line. For interaction logs and JSONL files this decodes
only those columns with msgspec (typed, so a line whose columns have the wrong types is skipped with the same
warning ``read_sources`` gives), about ten times faster than ``json.loads`` plus building full records. CSV
files and packet captures go through :func:`analyzer.sources.read_sources` as they are. The filters and the
"each record id once" rule are the same as ``read_sources``'s.
"""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import msgspec

from analyzer.pcap.analyze import DEFAULT_PORTS
from analyzer.protocol.record import REPORT, columns_in
from analyzer.report.derive import Request, to_request
from analyzer.sources import SourceError, read_sources
from analyzer.sources.read import wanted_once
from analyzer.store.log import LogError, log_files

Warn = Callable[[str], None]


def _report_struct() -> type[msgspec.Struct]:
    """The columns of the schema's ``report`` view as a msgspec Struct, with the types ``record_problem`` allows
    (every one may be null: older writers and unknown values)."""
    return msgspec.defstruct(
        "ReportColumns",
        [(c.name, c.decoded_type | None, None) for c in columns_in(REPORT)],
        module=__name__,
    )


ReportColumns = _report_struct()
"""The record columns the report reads (derived from the schema's ``report`` view)."""
_DECODER = msgspec.json.Decoder(ReportColumns)


def _jsonl_columns(path: Path, warn: Warn) -> Iterator[Any]:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise SourceError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    try:  # the whole file in one pass (a fifth faster than line by line) when every line is one record
        rows = _DECODER.decode_lines(data)
    except msgspec.DecodeError:
        pass
    else:
        # blank lines give no row and two records glued on one line give two (unless both occur in one file)
        if len(rows) == data.count(b"\n") + (1 if data[data.rfind(b"\n") + 1 :].strip() else 0):
            yield from rows
            return
    for number, line in enumerate(data.split(b"\n"), 1):
        if not line.strip():
            continue
        try:
            yield _DECODER.decode(line)
        except msgspec.ValidationError as exc:
            warn(f"{path}:{number}: skipped a line that is not a record ({exc})")
        except msgspec.DecodeError:
            warn(f"{path}:{number}: skipped a line that is not JSON")


def _is_log(path: Path) -> bool:
    try:
        return path.is_dir() and bool(log_files(path))
    except LogError as exc:
        raise SourceError(str(exc)) from exc


def _fast_files(source: Path) -> list[Path] | None:
    """The JSONL files to decode fast for ``source``, or None when it goes through ``read_sources``."""
    if _is_log(source):
        return log_files(source)
    if source.is_file() and source.suffix.lower() == ".jsonl":
        return [source]
    return None


@contextmanager
def _no_cyclic_gc() -> Iterator[None]:
    """Pause the cyclic garbage collector: building 200,000 small acyclic objects otherwise triggers it hundreds
    of times (about a fifth of the loading time) for nothing to collect."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def load_requests(
    sources: Sequence[str | Path],
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    models: Sequence[str] = (),
    warn: Warn | None = None,
    ports: tuple[int, ...] = DEFAULT_PORTS,
    include_replays: bool = False,
) -> tuple[list[Request], int]:
    """The requests of every source within [since, until) and of ``models`` (all when empty), oldest first, each
    record id once; and how many records had no readable ``started_at``. Records a replay wrote only with
    ``include_replays``. Raises SourceError for a bad source."""
    report: Warn = warn or (lambda _message: None)
    low = since.timestamp() if since else None
    high = until.timestamp() if until else None
    wanted = set(models)
    seen: set[str] = set()
    requests: list[Request] = []
    unreadable = 0

    def keep(rows: Iterable[Any]) -> None:
        nonlocal unreadable
        for row in wanted_once(rows, wanted, seen, include_replays):
            request = to_request(row)
            if request is None:
                unreadable += 1
                continue
            if (low is not None and request.start < low) or (high is not None and request.start >= high):
                continue
            requests.append(request)

    for source in sources:
        path = Path(source)
        files = _fast_files(path)
        if files is None:
            chosen = read_sources(
                [path],
                since=since,
                until=until,
                models=models,
                warn=report,
                ports=ports,
                include_replays=include_replays,
            )
            keep(chosen)
            continue
        with _no_cyclic_gc():  # only around our own decoding: captures go through the packet engines
            for file in files:
                keep(_jsonl_columns(file, report))
    requests.sort(key=lambda r: r.start)
    if since is not None or until is not None:
        unreadable = 0  # read_sources drops those when a time filter is given; so do we
    return requests, unreadable
