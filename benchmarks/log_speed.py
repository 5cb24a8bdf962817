"""How fast is ``ollama-wire logs`` on a history-sized log? Builds a synthetic interaction log of 200,000 records
over 90 days (~210 MB of JSONL, one file per UTC day, record sizes like real chat/generate traffic) and times,
as subprocesses (Python start-up included), side by side:

- a plain full read of the files (``cat``-like: every byte, no parsing) — the yardstick,
- a full ``json.loads`` of every line (what reading everything costs at least),
- ``ollama-wire logs`` (the last 20), ``logs --since 2h``, ``logs --summary`` (first run: builds the per-day
  summary cache; then warm), and ``logs -n 0 --since 1d --csv``,
- any extra command given with ``--also "report --json"`` (run as ``ollama-wire <args> SOURCE`` with
  ``--log-dir``-less SOURCE = the log directory; ``{log}`` in the string is replaced by the directory).

The log is cached under ``benchmarks/.cache/`` (delete it to rebuild); it ends at the time it was generated,
so ``--since 2h`` finds records only in a fresh one. Run: ``python benchmarks/log_speed.py [--records N]
[--days D] [--repeat R] [--also ARGS]``. Wall and CPU time (user + system) are both reported: on a shared
machine the CPU time is the steadier figure. Targets (issue 9): ``logs`` and ``logs --since 2h`` ≤ 0.3 s,
``logs --summary`` ≤ 2 s, ``report`` ≤ 10 s.
"""

from __future__ import annotations

import argparse
import os
import random
import resource
import shlex
import shutil
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from analyzer.protocol.record import InteractionRecord  # noqa: E402

CACHE = Path(__file__).resolve().parent / ".cache"
BIN = Path(sys.executable).parent
MODELS = ("llama3.2:3b", "qwen3:8b", "gemma3:4b", "mistral:7b")
WORDS = [
    "the",
    "llama",
    "reads",
    "a",
    "packet",
    "from",
    "the",
    "stream",
    "and",
    "the",
    "wire",
    "carries",
    "tokens",
    "to",
    "a",
    "client",
    "that",
    "waits",
    "for",
    "an",
    "answer",
    "about",
    "rust",
    "python",
    "go",
    "kubernetes",
    "latency",
    "throughput",
    "memory",
    "cache",
    "context",
    "window",
    "prompt",
    "model",
    "summarise",
    "this",
    "function",
    "explain",
    "the",
    "error",
    "please",
    "rewrite",
    "the",
    "paragraph",
    "in",
    "plain",
    "english",
]


def _text(rng: random.Random, words: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(words))


def synthetic_record(rng: random.Random, index: int, started: datetime) -> InteractionRecord:
    """One plausible record: chat (60%), generate (30%) or OpenAI chat (10%), some errors and aborts."""
    model = MODELS[index % 7 % len(MODELS)] if index % 5 else MODELS[0]
    kind = rng.choices(("chat", "generate", "openai"), (6, 3, 1))[0]
    eval_count = rng.randint(20, 160)
    rate = rng.gauss(45.0 if "3b" in model or "4b" in model else 22.0, 4.0)
    ttft = max(20.0, rng.gauss(180.0, 60.0)) + (rng.random() < 0.03) * rng.uniform(1500, 6000)
    gen_ms = eval_count / max(rate, 1.0) * 1000
    total = ttft + gen_ms + rng.uniform(1, 5)
    error = None
    status = 200
    if rng.random() < 0.02:
        status, error = rng.choice(((500, "model requires more system memory"), (404, f"model '{model}' not found")))
    prompt_words = rng.randint(4, 30)
    record = InteractionRecord(
        id=f"{index:08x}-{rng.getrandbits(48):012x}",
        source="proxy",
        started_at=started.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        client=f"127.0.0.1:{rng.randint(30000, 60000)}",
        server="127.0.0.1:11434",
        method="POST",
        path={"chat": "/api/chat", "generate": "/api/generate", "openai": "/v1/chat/completions"}[kind],
        status=status,
        api="openai" if kind == "openai" else "ollama",
        kind="generate" if kind == "generate" else "chat",
        model=model,
        stream=True,
        prompt=_text(rng, prompt_words) if kind == "generate" else None,
        messages=None
        if kind == "generate"
        else [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": _text(rng, prompt_words)},
        ],
        response_text="" if error else _text(rng, eval_count // 6),
        done_reason=None if error else rng.choice(("stop",) * 9 + ("length",)),
        error=error,
        complete=error is None,
        ttfb_ms=round(ttft - 0.4, 3),
        ttft_ms=None if error else round(ttft, 3),
        total_ms=round(total, 3),
        gen_ms=None if error else round(gen_ms, 3),
        chunks=0 if error else eval_count + 1,
        wire_tokens_per_s=None if error else round(rate * 0.98, 2),
        gap_p50_ms=None if error else round(1000 / max(rate, 1), 3),
        gap_p95_ms=None if error else round(1300 / max(rate, 1), 3),
        gap_max_ms=None if error else round(2500 / max(rate, 1), 3),
        prompt_eval_count=None if error else prompt_words + 20,
        eval_count=None if error else eval_count,
        total_duration_ms=None if error else round(total - 2, 3),
        load_duration_ms=None if error else round(rng.uniform(5, 40), 3),
        prompt_eval_duration_ms=None if error else round(ttft * 0.6, 3),
        eval_duration_ms=None if error else round(gen_ms, 3),
        eval_tokens_per_s=None if error else round(rate, 2),
        prompt_tokens_per_s=None if error else round(rng.uniform(300, 900), 2),
        request_bytes=200 + prompt_words * 6,
        response_bytes=0 if error else eval_count * 110,
    )
    return record


def build_log(directory: Path, records: int, days: int, end: datetime) -> None:
    """Write the synthetic log: records spread over ``days`` days ending at ``end``, busier by day than night,
    appended in finishing order to the file of their start day (as the addon does)."""
    rng = random.Random(9)
    start = end - timedelta(days=days)
    span = (end - start).total_seconds()
    moments = []
    while len(moments) < records:
        offset = rng.random() * span
        hour = (start + timedelta(seconds=offset)).hour
        if rng.random() < (1.0 if 8 <= hour < 20 else 0.35):
            moments.append(offset)
    moments.sort()
    tmp = directory.with_suffix(".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    by_day: dict[str, list[tuple[float, str]]] = {}
    for index, offset in enumerate(moments):
        started = start + timedelta(seconds=offset)
        record = synthetic_record(rng, index, started)
        finished = offset + (record.total_ms or 0) / 1000
        by_day.setdefault(f"{started:%Y-%m-%d}", []).append((finished, record.to_json()))
    for day, lines in by_day.items():
        lines.sort()
        (tmp / f"{day}.jsonl").write_text("".join(line + "\n" for _, line in lines), encoding="utf-8")
    tmp.rename(directory)


def cached_log(records: int, days: int) -> Path:
    directory = CACHE / f"log-{records}-{days}d"
    if not directory.exists():
        print(f"building {directory} ...", file=sys.stderr, flush=True)
        began = time.monotonic()
        build_log(directory, records, days, datetime.now(UTC))
        print(f"  built in {time.monotonic() - began:.1f} s", file=sys.stderr)
    return directory


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_timed(argv: list[str], repeat: int) -> tuple[float, float, list[float], str]:
    """Median wall seconds and median CPU seconds (user + system) of ``repeat`` runs of ``argv``, all wall
    times, and the last stdout. CPU time is the steadier figure on a shared machine."""
    times, cpus, out = [], [], ""
    for _ in range(repeat):
        cpu = _children_cpu()
        began = time.perf_counter()
        done = subprocess.run(argv, capture_output=True, text=True, check=False)
        times.append(time.perf_counter() - began)
        cpus.append(_children_cpu() - cpu)
        if done.returncode != 0:
            raise SystemExit(f"{shlex.join(argv)} failed ({done.returncode}): {done.stderr.strip()[-500:]}")
        out = done.stdout
    return statistics.median(times), statistics.median(cpus), times, out


PLAIN_READ = (
    "import sys, pathlib\n"
    "n = 0\n"
    "for p in sorted(pathlib.Path(sys.argv[1]).glob('*.jsonl')):\n"
    "    with open(p, 'rb') as f:\n"
    "        while (b := f.read(1 << 20)):\n"
    "            n += len(b)\n"
    "print(n)\n"
)
JSON_READ = (
    "import sys, json, pathlib\n"
    "n = 0\n"
    "for p in sorted(pathlib.Path(sys.argv[1]).glob('*.jsonl')):\n"
    "    with open(p, 'rb') as f:\n"
    "        for line in f:\n"
    "            json.loads(line); n += 1\n"
    "print(n)\n"
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--repeat", type=int, default=3, help="runs per measurement (median reported)")
    parser.add_argument(
        "--also", action="append", default=[], help='another ollama-wire command to time, e.g. "report {log} -o x.html"'
    )
    args = parser.parse_args()
    log = cached_log(args.records, args.days)
    size = sum(p.stat().st_size for p in log.glob("*.jsonl"))
    files = len(list(log.glob("*.jsonl")))
    print(f"log: {log} — {args.records:,} records, {files} files, {size / 1e6:.0f} MB; cpus: {os.cpu_count()}")
    exe = str(BIN / "ollama-wire")
    summary_cache = log / ".summary-cache"
    shutil.rmtree(summary_cache, ignore_errors=True)
    subprocess.run(["cat", *map(str, sorted(log.glob("*.jsonl")))], stdout=subprocess.DEVNULL, check=True)  # warm
    base = [exe, "logs", "--log-dir", str(log)]
    measurements: list[tuple[str, list[str], int]] = [
        ("plain full read of the files (python)", [sys.executable, "-c", PLAIN_READ, str(log)], args.repeat),
        ("json.loads of every line (python)", [sys.executable, "-c", JSON_READ, str(log)], 1),
        ("`ollama-wire --version` (start-up)", [exe, "--version"], args.repeat),
        ("`logs` (last 20)", base, args.repeat),
        ("`logs --since 2h`", [*base, "--since", "2h"], args.repeat),
        ("`logs -n 0 --since 1d --csv`", [*base, "-n", "0", "--since", "1d", "--csv"], args.repeat),
        ("`logs --model qwen3:8b --errors` (last 20)", [*base, "--model", "qwen3:8b", "--errors"], args.repeat),
        ("`logs --summary` (cold: builds the cache)", [*base, "--summary"], 1),
        ("`logs --summary` (warm)", [*base, "--summary"], args.repeat),
        (
            "`logs --summary --since 7d --model qwen3:8b`",
            [*base, "--summary", "--since", "7d", "--model", "qwen3:8b"],
            1,
        ),
        ("`report --json` (headline + findings)", [exe, "report", str(log), "--json"], args.repeat),
        ("`report` (the HTML page)", [exe, "report", str(log), "-o", str(log.parent / "report.html")], args.repeat),
    ]
    for extra in args.also:
        words = shlex.split(extra.replace("{log}", str(log)))
        measurements.append((f"`{' '.join(words[:3])}`", [exe, *words], 1))
    yardstick = startup = None
    print("\n| measurement | wall s | CPU s | CPU vs plain read | CPU beyond start-up | wall runs (s); output |")
    print("|---|---:|---:|---:|---:|---|")
    for label, argv, repeat in measurements:
        median, cpu, times, out = run_timed(argv, repeat)
        yardstick = yardstick or cpu
        if "--version" in argv:
            startup = cpu
        beyond = f"{cpu - startup:.3f}" if startup is not None and argv[0] == exe else ""
        runs = ", ".join(f"{t:.3f}" for t in times)
        lines = out.count("\n")
        print(
            f"| {label} | {median:.3f} | {cpu:.3f} | {cpu / yardstick:.2f}× | {beyond} | {runs}; {lines} lines |",
            flush=True,
        )


if __name__ == "__main__":
    main()
