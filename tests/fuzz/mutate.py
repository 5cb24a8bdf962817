"""Mutation fuzzer: damaged copies of ordinary captures, each analyzed in a watched child process.

Mutations (one to three per case): bit flips, truncation, a spliced-out range, a zeroed range, a
duplicated range. A child process analyzes case after case (the fast engine, records serialised to
JSON as the CLI does); the parent waits for each answer at most a time budget proportional to the
file's size. A case that hangs (the child is killed and replaced), raises an unexpected exception, or
trips the HTTP parser's work bound is a failure: its bytes are saved under ``--save-dir`` (by default
the regression corpus ``tests/data/fuzz-regressions/``), which the test suite replays.

    python tests/fuzz/mutate.py --seconds 60            # soak (make fuzz)
    python tests/fuzz/mutate.py --cases 200 --seed 1    # a fixed, repeatable batch
"""

from __future__ import annotations

import argparse
import hashlib
import multiprocessing as mp
import random
import sys
import tempfile
import time
import traceback
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import contextlib

from seeds import REGRESSIONS, all_seeds

# -- mutations ---------------------------------------------------------------------------------------


def _bit_flips(data: bytearray, rng: random.Random) -> None:
    for _ in range(rng.randint(1, 16)):
        i = rng.randrange(len(data))
        data[i] ^= 1 << rng.randrange(8)


def _truncate(data: bytearray, rng: random.Random) -> None:
    del data[rng.randrange(len(data)) :]


def _splice_out(data: bytearray, rng: random.Random) -> None:
    start = rng.randrange(len(data))
    del data[start : start + rng.randint(1, max(1, min(4096, len(data) // 4)))]


def _zero_range(data: bytearray, rng: random.Random) -> None:
    start = rng.randrange(len(data))
    size = rng.randint(1, max(1, min(1024, len(data) // 8)))
    data[start : start + size] = bytes(len(data[start : start + size]))


def _duplicate_range(data: bytearray, rng: random.Random) -> None:
    start = rng.randrange(len(data))
    piece = data[start : start + rng.randint(1, 512)]
    at = rng.randrange(len(data) + 1)
    data[at:at] = piece


MUTATORS = (_bit_flips, _truncate, _splice_out, _zero_range, _duplicate_range)
# Whole-file truncation is kept rare: it mostly yields "cut short" files, which are dull.
WEIGHTS = (5, 1, 3, 3, 2)


def mutate(seed: bytes, rng: random.Random) -> bytes:
    """One to three random mutations of ``seed`` (never empty)."""
    data = bytearray(seed)
    for mutator in rng.choices(MUTATORS, WEIGHTS, k=rng.randint(1, 3)):
        if data:
            mutator(data, rng)
    return bytes(data) or seed[:1]


# -- the watched child ----------------------------------------------------------------------------------


def analyze_bytes(data: bytes, suffix: str, workdir: Path) -> tuple[int, int]:
    """Analyze ``data`` as a capture file: (records, stalled connections). Raises on unexpected errors."""
    from analyzer.pcap.analyze import AnalyzeOptions, analyze_capture

    path = workdir / f"case{suffix}"
    path.write_bytes(data)
    result = analyze_capture(path, AnalyzeOptions(engine="fast"))
    for record in result.records:
        record.to_json()
    return len(result.records), getattr(result.stats, "stalled_connections", 0)


def _child(conn: Connection) -> None:
    with tempfile.TemporaryDirectory(prefix="fuzz-") as tmp:
        workdir = Path(tmp)
        while True:
            try:
                message = conn.recv()
            except EOFError:
                return
            if message is None:
                return
            data, suffix = message
            try:
                records, stalled = analyze_bytes(data, suffix, workdir)
                conn.send(("stalled", f"{stalled} connection(s) hit the work bound") if stalled else ("ok", ""))
            except Exception:
                conn.send(("crash", traceback.format_exc(limit=6)))


def budget_seconds(size: int, base: float = 10.0) -> float:
    """How long one case may take: generous, proportional to its size (the machine may be busy)."""
    return base + size / 50_000


class Watched:
    """A child analyzing cases one at a time; killed and replaced when a case overruns its budget."""

    def __init__(self) -> None:
        self._ctx = mp.get_context("fork")
        self._start()

    def _start(self) -> None:
        self.conn, child_conn = self._ctx.Pipe()
        self.proc = self._ctx.Process(target=_child, args=(child_conn,), daemon=True)
        self.proc.start()
        child_conn.close()

    def run(self, data: bytes, suffix: str, budget: float) -> tuple[str, str]:
        """("ok"|"crash"|"stalled"|"hang", detail)."""
        self.conn.send((data, suffix))
        if self.conn.poll(budget):
            try:
                return self.conn.recv()  # type: ignore[no-any-return]
            except EOFError:
                pass
            self._restart()
            return "crash", "the analyzing process died"
        self._restart()
        return "hang", f"no answer within {budget:.0f} s"

    def _restart(self) -> None:
        self.proc.kill()
        self.proc.join(5)
        self.conn.close()
        self._start()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.conn.send(None)
        self.proc.join(5)
        if self.proc.is_alive():
            self.proc.kill()
            self.proc.join(5)


# -- the loop ----------------------------------------------------------------------------------------------


@dataclass
class FuzzReport:
    cases: int = 0
    failures: list[tuple[str, str, Path | None]] = field(default_factory=list)  # (kind, detail, saved file)


def save_failure(data: bytes, kind: str, suffix: str, save_dir: Path) -> Path:
    save_dir.mkdir(parents=True, exist_ok=True)
    path = save_dir / f"{kind}-{hashlib.sha256(data).hexdigest()[:12]}{suffix}"
    path.write_bytes(data)
    return path


def fuzz(
    *,
    cases: int | None = None,
    seconds: float | None = None,
    seed: int = 0,
    save_dir: Path | None = REGRESSIONS,
    seeds: dict[str, bytes] | None = None,
    on_failure=None,
) -> FuzzReport:
    """Run mutated cases until ``cases`` are done or ``seconds`` have passed (whichever comes first)."""
    rng = random.Random(seed)
    corpus = sorted((seeds or all_seeds()).items())
    report = FuzzReport()
    deadline = time.monotonic() + seconds if seconds is not None else None
    watched = Watched()
    try:
        while (cases is None or report.cases < cases) and (deadline is None or time.monotonic() < deadline):
            name, original = rng.choice(corpus)
            suffix = Path(name).suffix or ".pcap"
            data = mutate(original, rng)
            kind, detail = watched.run(data, suffix, budget_seconds(len(data)))
            report.cases += 1
            if kind != "ok":
                saved = save_failure(data, kind, suffix, save_dir) if save_dir is not None else None
                report.failures.append((kind, f"{name}: {detail}", saved))
                if on_failure is not None:
                    on_failure(kind, name, detail, saved)
    finally:
        watched.close()
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=None, help="stop after this long")
    parser.add_argument("--cases", type=int, default=None, help="stop after this many cases")
    parser.add_argument("--seed", type=int, default=None, help="random seed (default: time-based, printed)")
    parser.add_argument("--jobs", type=int, default=1, help="parallel fuzzing processes")
    parser.add_argument("--save-dir", type=Path, default=REGRESSIONS, help="where failing inputs go")
    args = parser.parse_args(argv)
    if args.seconds is None and args.cases is None:
        args.seconds = 60.0
    base_seed = args.seed if args.seed is not None else int(time.time())

    def report_failure(kind: str, name: str, detail: str, saved: Path | None) -> None:
        print(f"{kind.upper()}: mutated {name}: {detail.strip().splitlines()[-1]} -> {saved}", flush=True)

    jobs = max(1, args.jobs)
    per_job = None if args.cases is None else -(-args.cases // jobs)
    started = time.monotonic()
    if jobs == 1:
        reports = [fuzz(cases=per_job, seconds=args.seconds, seed=base_seed, save_dir=args.save_dir,
                        on_failure=report_failure)]  # fmt: skip
    else:
        # Not multiprocessing.Pool: its workers are daemonic and may not start the watched children.
        with ProcessPoolExecutor(jobs, mp_context=mp.get_context("fork")) as pool:
            futures = [pool.submit(_fuzz_job, per_job, args.seconds, base_seed + i, args.save_dir) for i in range(jobs)]
            reports = [future.result() for future in futures]
        for report in reports:
            for kind, detail, saved in report.failures:
                report_failure(kind, "", detail, saved)
    total = sum(r.cases for r in reports)
    failures = sum(len(r.failures) for r in reports)
    print(f"mutation fuzz: {total} cases in {time.monotonic() - started:.0f} s (seed {base_seed}, {jobs} job(s)), "
          f"{failures} failure(s)")  # fmt: skip
    return 1 if failures else 0


def _fuzz_job(cases: int | None, seconds: float | None, seed: int, save_dir: Path) -> FuzzReport:
    return fuzz(cases=cases, seconds=seconds, seed=seed, save_dir=save_dir)


if __name__ == "__main__":
    sys.exit(main())
