"""Does a flood of distinct model names grow the proxy? (issue 21: no client may grow the recorder without bound)

Two real ``mitmdump -s addons/ollama_log.py`` proxies with Prometheus export on (``ollama_label_limit`` at its
default, 100), each in front of its own emulator that answers any model name, get the same number of small
non-streamed generate requests side by side, in rounds:

- A: every request names the same model (the yardstick: what the proxy's memory does anyway),
- B: every request names a model never seen before (``flood-<n>``).

After each round both proxies' resident memory (``/proc/PID/status`` VmRSS) and the number of distinct
``gen_ai_request_model`` values on their ``/metrics`` page are printed; the verdict compares B's growth after the
first round with A's. Run: ``python benchmarks/label_flood.py [--rounds R] [--per-round N]``.
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
import threading
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import ollama  # noqa: E402

from analyzer.emulator import EmulatorConfig, EmulatorThread  # noqa: E402
from analyzer.recorder.process import free_port  # noqa: E402
from tests.support.processes import Mitmdump  # noqa: E402


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def models_on_page(port: int) -> int:
    page = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    return len(set(re.findall(r'gen_ai_request_model="((?:[^"\\]|\\.)*)"', page)))


def send(url: str, names: list[str], threads: int = 4) -> None:
    def worker(part: list[str]) -> None:
        client = ollama.Client(host=url, timeout=60)
        for name in part:
            client.generate(model=name, prompt="x", stream=False)

    running = [threading.Thread(target=worker, args=(names[k::threads],)) for k in range(threads)]
    for thread in running:
        thread.start()
    for thread in running:
        thread.join()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--per-round", type=int, default=500)
    parser.add_argument("--label-limit", type=int, default=100, help="ollama_label_limit of both proxies")
    parser.add_argument(
        "--no-export", action="store_true", help="Both proxies without the Prometheus export (what the recorder costs)"
    )
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="label-flood-"))
    config = EmulatorConfig(any_model=True, tokens=2, prefill_ms=0.0, token_ms=0.0)
    with EmulatorThread(config) as upstream_a, EmulatorThread(config) as upstream_b:
        ports = {"A": free_port(), "B": free_port()}
        for side in ports:
            (base / side).mkdir()
        proxies = {
            side: Mitmdump(
                upstream.url,
                "127.0.0.1",
                base / side / "log",
                base / side / "console.txt",
                *([] if args.no_export else [f"ollama_prometheus=127.0.0.1:{ports[side]}"]),
                "ollama_live=off",
                "ollama_console=false",
                f"ollama_label_limit={args.label_limit}",
            ).start()
            for side, upstream in (("A", upstream_a), ("B", upstream_b))
        }
        try:
            start = {side: rss_mb(proxy.process.pid) for side, proxy in proxies.items()}
            print(f"start: A {start['A']:.1f} MB, B {start['B']:.1f} MB RSS")
            print("round  requests  A: RSS MB  A: models  B: RSS MB  B: models")
            seen: dict[str, list[float]] = {"A": [], "B": []}
            for round_ in range(1, args.rounds + 1):
                first = (round_ - 1) * args.per_round
                for side in ("A", "B") if round_ % 2 else ("B", "A"):  # alternate who goes first
                    names = (
                        ["same:1b"] * args.per_round
                        if side == "A"
                        else [f"flood-{n}" for n in range(first, first + args.per_round)]
                    )
                    send(proxies[side].url, names)
                line = [f"{round_:5}", f"{round_ * args.per_round:8}"]
                for side in ("A", "B"):
                    seen[side].append(rss_mb(proxies[side].process.pid))
                    shown = "-" if args.no_export else models_on_page(ports[side])
                    line += [f"{seen[side][-1]:9.1f}", f"{shown:>9}"]
                print("  ".join(line))
            growth = {side: values[-1] - values[0] for side, values in seen.items()}
            print(
                f"verdict: after round 1, A grew {growth['A']:+.1f} MB and B {growth['B']:+.1f} MB over "
                f"{(args.rounds - 1) * args.per_round} more requests (B with as many new model names)"
            )
        finally:
            for proxy in proxies.values():
                proxy.stop()


if __name__ == "__main__":
    main()
