"""``logs --summary`` on the 200,000-record log, first run (no cache), this tree against another commit, A/B/A/B.

Both sides run the same command, ``ollama-wire logs --log-dir LOG --summary``, as a subprocess (start-up and any
worker processes included) from their own checkout, on the same log (``log_speed.py``'s, built with this tree's
record: every column it has now), with the summary cache deleted before every run. Reported per side: median CPU
(user + system, the steadier figure on a shared machine) and wall time, the spread of identical runs (max − min
over median), and the ratio B/A per round. The outputs of both sides must be the same.

Run: ``python benchmarks/summary_speed.py [--against REF] [--rounds N] [--records N] [--days D]``
(default: against d3d0b38, main before the schema was declared once; 5 rounds). Target (issue 19): B ≤ 2 s CPU.
"""

from __future__ import annotations

import argparse
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))

from log_speed import cached_log  # noqa: E402

TARGET_CPU_S = 2.0
COMMAND = "import sys; from analyzer.cli.main import cli; sys.argv[0] = 'ollama-wire'; cli()"


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def first_summary(checkout: Path, log: Path) -> tuple[float, float, str]:
    """CPU and wall seconds of one ``logs --summary`` with no cache, run from ``checkout``; and its output."""
    shutil.rmtree(log / ".summary-cache", ignore_errors=True)
    argv = [sys.executable, "-c", COMMAND, "logs", "--log-dir", str(log), "--summary"]
    cpu, began = _children_cpu(), time.perf_counter()
    done = subprocess.run(argv, cwd=checkout, env={"PYTHONPATH": str(checkout)}, capture_output=True, text=True)
    wall, used = time.perf_counter() - began, _children_cpu() - cpu
    if done.returncode != 0:
        raise SystemExit(f"{checkout}: logs --summary failed ({done.returncode}): {done.stderr.strip()[-500:]}")
    return used, wall, done.stdout


def spread(values: list[float]) -> str:
    return f"±{(max(values) - min(values)) / statistics.median(values) / 2:.0%}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--against", default="d3d0b38", help="the commit side A runs (default: %(default)s)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--days", type=int, default=90)
    args = parser.parse_args()
    log = cached_log(args.records, args.days)
    size = sum(p.stat().st_size for p in log.glob("*.jsonl"))
    subprocess.run(["cat", *map(str, sorted(log.glob("*.jsonl")))], stdout=subprocess.DEVNULL, check=True)  # warm
    with tempfile.TemporaryDirectory(prefix="summary-ab-") as temporary:
        other = Path(temporary) / "a"
        subprocess.run(
            ["git", "-C", str(ROOT), "worktree", "add", "--detach", "-q", str(other), args.against], check=True
        )
        try:
            sides = {"A": other, "B": ROOT}
            cpu: dict[str, list[float]] = {"A": [], "B": []}
            wall: dict[str, list[float]] = {"A": [], "B": []}
            outputs: dict[str, set[str]] = {"A": set(), "B": set()}
            for _ in range(args.rounds):
                for name, checkout in sides.items():
                    used, took, out = first_summary(checkout, log)
                    cpu[name].append(used)
                    wall[name].append(took)
                    outputs[name].add(out)
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(other)], check=False)
    ratios = [b / a for a, b in zip(cpu["A"], cpu["B"], strict=True)]
    median_b = statistics.median(cpu["B"])
    same = outputs["A"] == outputs["B"] and len(outputs["B"]) == 1
    verdict = "meets" if median_b <= TARGET_CPU_S else "misses"
    print(
        f"B {verdict} the target: `logs --summary`, first run, {median_b:.2f} s CPU (target ≤ {TARGET_CPU_S:.0f} s); "
        f"B/A CPU ×{statistics.median(ratios):.2f} (rounds {min(ratios):.2f}–{max(ratios):.2f}); "
        f"outputs {'identical' if same else 'DIFFER'}"
    )
    print(f"log: {log} — {args.records:,} records, {size / 1e6:.0f} MB; A = {args.against}, B = this tree")
    print("\n| side | CPU s median | CPU spread (A/A, B/B) | CPU runs | wall s median | wall runs |")
    print("|---|---:|---:|---|---:|---|")
    for name in sides:
        runs = ", ".join(f"{v:.2f}" for v in cpu[name])
        walls = ", ".join(f"{v:.2f}" for v in wall[name])
        print(
            f"| {name} | {statistics.median(cpu[name]):.2f} | {spread(cpu[name])} | {runs} | "
            f"{statistics.median(wall[name]):.2f} | {walls} |"
        )
    if not same:
        raise SystemExit("the two sides printed different summaries")


if __name__ == "__main__":
    main()
