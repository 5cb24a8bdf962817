"""TTFT and tokens/s of a real Ollama (v0.24.0, SmolLM2-135M on CPU) direct vs through mitmdump with the addon.

    make real-ollama
    unshare -n sh -c 'ip link set lo up && .venv/bin/python benchmarks/real_ollama.py [--rounds 6] [--tokens 32]'

(``unshare -rn`` without root.) One ``ollama serve`` (``tests/support/real_ollama.py``) with the model loaded, and
one ``mitmdump -s addons/ollama_log.py`` in front of it. Each round sends the same streamed generate (fixed seed,
temperature 0, ``num_predict`` tokens) direct, then through the proxy, then again direct (A/B/A...), so machine
noise hits both alike; a third configuration, "direct, again", is the A/A control: the spread of identical runs.
Client clock (raw httpx, lines found by byte search): TTFT from just before sending to the first line with a
token; tokens/s = tokens after the first / time from the first to the last token line.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.support.processes import Mitmdump  # noqa: E402
from tests.support.real_ollama import RealOllamaError, running  # noqa: E402

CONFIGS = ("direct", "proxy", "direct, again")


def one_stream(client: httpx.Client, model: str, tokens: int) -> tuple[float, float]:
    body = {"model": model, "prompt": "Count from one to one hundred:", "options": {
        "num_predict": tokens, "temperature": 0, "seed": 7}}  # fmt: skip
    sent = time.perf_counter()
    stamps: list[float] = []
    with client.stream("POST", "/api/generate", json=body) as reply:
        for line in reply.iter_lines():
            if '"done":false' in line and '"response":""' not in line:
                stamps.append(time.perf_counter())
    ttft_ms = (stamps[0] - sent) * 1000
    rate = (len(stamps) - 1) / (stamps[-1] - stamps[0]) if len(stamps) > 1 else float("nan")
    return ttft_ms, rate


def spread(values: list[float]) -> str:
    return f"{statistics.median(values):.1f} ({min(values):.1f}-{max(values):.1f})"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--tokens", type=int, default=32)
    args = parser.parse_args()
    try:
        with running(num_parallel=1) as server, tempfile.TemporaryDirectory() as tmp:
            proxy = Mitmdump(server.url, "127.0.0.1", Path(tmp) / "log", Path(tmp) / "console.txt").start()
            try:
                urls = {"direct": server.url, "proxy": proxy.url, "direct, again": server.url}
                clients = {name: httpx.Client(base_url=url, timeout=300, trust_env=False) for name, url in urls.items()}
                one_stream(clients["direct"], server.model, 2)  # load the model: no round pays the cold load
                results: dict[str, list[tuple[float, float]]] = {name: [] for name in CONFIGS}
                for _ in range(args.rounds):
                    for name in CONFIGS:
                        results[name].append(one_stream(clients[name], server.model, args.tokens))
            finally:
                proxy.stop()
    except RealOllamaError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 1
    print(f"{args.rounds} rounds x {args.tokens} tokens, SmolLM2-135M Q4_1, median (min-max)")
    print("| configuration | TTFT ms | tokens/s |")
    print("|---|---|---|")
    for name in CONFIGS:
        ttft = [t for t, _ in results[name]]
        rate = [r for _, r in results[name]]
        print(f"| {name} | {spread(ttft)} | {spread(rate)} |")
    direct_ttft = statistics.median(t for t, _ in results["direct"])
    proxy_ttft = statistics.median(t for t, _ in results["proxy"])
    direct_rate = statistics.median(r for _, r in results["direct"])
    proxy_rate = statistics.median(r for _, r in results["proxy"])
    print(f"proxy/direct: TTFT x{proxy_ttft / direct_ttft:.3f}, tokens/s x{proxy_rate / direct_rate:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
