"""One capture file → interaction records, with either packet engine, through the shared protocol core."""

from __future__ import annotations

import hashlib
import multiprocessing as mp
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path

from analyzer.pcap.errors import CaptureError, UnsupportedLinkTypeError
from analyzer.pcap.exchanges import ExchangeStats, exchanges_from_capture, exchanges_from_segments
from analyzer.protocol.endpoints import OLLAMA_PORT, classify
from analyzer.protocol.interaction import DEFAULT_MAX_TEXT_CHARS, InteractionBuilder
from analyzer.protocol.record import InteractionRecord
from analyzer.protocol.redact import REDACT_IMAGES

DEFAULT_PORTS = (OLLAMA_PORT,)
ENGINES = ("auto", "fast", "tshark")


@dataclass
class AnalyzeOptions:
    """How to read captures: Ollama ports, engine, TLS key log, redaction, text cap."""

    ports: tuple[int, ...] = DEFAULT_PORTS
    engine: str = "auto"
    tls_keylog: Path | None = None
    tls_ports: tuple[int, ...] = (443,)
    redaction: str = REDACT_IMAGES
    max_text_chars: int = DEFAULT_MAX_TEXT_CHARS


@dataclass
class CaptureResult:
    """What one file gave: records, counters, warnings, the engine used, or the error that stopped it."""

    path: Path
    records: list[InteractionRecord] = field(default_factory=list)
    stats: ExchangeStats = field(default_factory=ExchangeStats)
    warnings: list[str] = field(default_factory=list)
    engine: str = ""
    error: str | None = None
    non_ollama_requests: int = 0  # HTTP requests on the port to paths that are not Ollama's API


def record_id(record: InteractionRecord) -> str:
    """A stable id for a captured interaction: the same exchange in two overlapping captures gets the same id."""
    key = "|".join((record.client, record.server, record.started_at, record.method, record.path))
    return "pcap-" + hashlib.sha256(key.encode()).hexdigest()[:24]


def _builder_factory(options: AnalyzeOptions) -> Callable[[str, str], InteractionBuilder]:
    def make(client: str, server: str) -> InteractionBuilder:
        return InteractionBuilder(
            source="pcap",
            client=client,
            server=server,
            record_id="pending",
            max_text_chars=options.max_text_chars,
            redaction=options.redaction,
        )

    return make


def _is_ollama(record: InteractionRecord) -> bool:
    """The addon's rule: an Ollama endpoint path; without a request line, a recognisable Ollama body."""
    if record.path:
        return classify(record.path) is not None
    return bool(record.kind)


def _iter_records(
    path: Path, options: AnalyzeOptions, engine: str, result: CaptureResult
) -> Iterator[InteractionRecord]:
    stats, warnings = result.stats, result.warnings
    factory = _builder_factory(options)
    if engine == "fast":
        results = exchanges_from_capture(str(path), options.ports, factory, stats, on_warning=warnings.append)
    else:
        from analyzer.pcap.tshark_engine import iter_tshark_segments

        ports = set(options.ports)
        if options.tls_keylog is not None:
            ports |= set(options.tls_ports)  # decrypted HTTPS is Ollama traffic on the TLS port
        segments = iter_tshark_segments(
            path, ports, tls_keylog=options.tls_keylog, tls_ports=options.tls_ports, on_warning=warnings.append
        )
        results = exchanges_from_segments(segments, ports, factory, stats)
    for record in results:
        if not _is_ollama(record):
            result.non_ollama_requests += 1
            continue
        record.id = record_id(record)
        yield record


def iter_capture(path: Path, options: AnalyzeOptions, result: CaptureResult) -> Iterator[InteractionRecord]:
    """Stream the Ollama interactions of one capture file as they complete; memory stays flat.

    Never raises for bad input: ``result`` receives the counters, warnings, the engine used, or the
    ``error`` that stopped the file. ``auto`` reads with the fast engine and falls back to tshark for
    link types it cannot read (and always uses tshark when a TLS key log is given).
    """
    engine = options.engine
    if engine == "auto":
        engine = "tshark" if options.tls_keylog else "fast"
    result.engine = engine
    yielded: set[str] = set()
    try:
        for record in _iter_records(result.path, options, engine, result):
            yielded.add(record.id)
            yield record
    except UnsupportedLinkTypeError as exc:
        if options.engine != "auto":
            result.error = str(exc)
            return
        # pcapng can name an interface the fast engine cannot read after packets it could: tshark reads
        # the whole file again, and what was already yielded is not repeated.
        result.warnings.append(f"{result.path}: {exc.problem}; reading it with tshark instead")
        result.engine, result.stats, result.non_ollama_requests = "tshark", ExchangeStats(), 0
        try:
            for record in _iter_records(result.path, options, "tshark", result):
                if record.id not in yielded:
                    yield record
        except CaptureError as inner:
            result.error = str(inner)
    except CaptureError as exc:
        result.error = str(exc)
    except OSError as exc:
        result.error = f"{result.path}: {exc.strerror or exc}"


def analyze_capture(path: Path, options: AnalyzeOptions) -> CaptureResult:
    """Every Ollama interaction in one capture file, collected. Never raises for bad input: see ``error``."""
    result = CaptureResult(path=Path(path))
    result.records = list(iter_capture(result.path, options, result))
    return result


def _bounded_child(conn: Connection, path: Path, options: AnalyzeOptions) -> None:
    try:
        conn.send(analyze_capture(path, options))
    except BaseException as exc:  # the parent reports it as this file's failure
        conn.send(CaptureResult(path=Path(path), error=f"{path}: analysis failed: {type(exc).__name__}: {exc}"))
    finally:
        conn.close()


def analyze_capture_bounded(path: Path, options: AnalyzeOptions, budget: float) -> CaptureResult:
    """:func:`analyze_capture` in a child process given ``budget`` seconds; past it the child is killed
    and the result carries an ``error`` naming the file (a second line of defence against a parser that
    stops making progress)."""
    path = Path(path)
    context = mp.get_context("spawn")  # no inherited threads or locks of the caller
    receiver, sender = context.Pipe(duplex=False)
    child = context.Process(target=_bounded_child, args=(sender, path, options), daemon=True)
    child.start()
    sender.close()
    try:
        if receiver.poll(max(budget, 0.0)):
            try:
                result: CaptureResult = receiver.recv()
                return result
            except (EOFError, OSError):
                return CaptureResult(path=path, error=f"{path}: analysis failed: the analyzing process died")
        return CaptureResult(path=path, error=f"{path}: analysis gave up after {budget:.0f} s (its time budget)")
    finally:
        receiver.close()
        if child.is_alive():
            child.kill()
        child.join(10)


def analyze_paths(paths: Collection[Path], options: AnalyzeOptions, *, jobs: int = 1) -> Iterator[CaptureResult]:
    """Analyze files in the given order (``jobs`` > 1: in parallel processes, results still in order)."""
    if jobs <= 1 or len(paths) <= 1:
        for path in paths:
            yield analyze_capture(path, options)
        return
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(max_workers=jobs) as pool:
        yield from pool.map(analyze_capture, paths, [options] * len(paths))
