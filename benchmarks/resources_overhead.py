"""What resource sampling costs: the work it does per request in the feeds' companion, and the proxy side by side.

    .venv/bin/python benchmarks/resources_overhead.py [--requests 30] [--quick]

Part 1 (in process): the cost of ``enrich_record`` (in the companion, before it writes the record) with a full
one-hour ring buffer at 200 ms (18,000 samples of six metrics), a 5 s request and four
requests still streaming, and of ``interaction_progressed`` (called per coalesced progress message).

Part 2 (real processes): the emulator (``ollama-wire emulate``, own process) behind two mitmdumps with the
recorder, one with ``ollama_resources=off`` and one with ``auto`` at the default 200 ms (here: process, host,
ollama_ps), requests interleaved round-robin. Per configuration: client TTFT p50/p95, total time p50, and the
CPU seconds each mitmdump used. Prints ratios measured side by side; no targets are asserted.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import httpx

from analyzer.companion.resource_feed import ResourceFeed, _Live
from analyzer.protocol.record import InteractionRecord
from analyzer.recorder.process import MitmdumpProcess, free_port, wait_for_port
from analyzer.resources.attribution import Activity
from analyzer.resources.timeline import SamplingThread
from analyzer.store.log import InteractionLog

MODEL = "llama3.2:1b"


def micro(calls: int) -> dict[str, float]:
    addon = ResourceFeed()
    now = time.time()
    for i in range(18_000):
        t = now - 3600 + i * 0.2
        addon.timeline.add(
            t,
            {"cpu_s": i * 0.05, "rss_mb": 4000.0, "energy_j": i * 40.0, "power_w": 200.0, "gpu_util_pct": 90.0,
             "gpu_mem_mb": 6000.0},
        )  # fmt: skip
    addon.thread = SamplingThread([], addon.timeline)
    for n in range(4):
        addon.live[f"live{n}"] = _Live(now - 3, now - 2.5, now - 0.01, 100)
    for n in range(200):
        addon.recent.append(Activity(f"old{n}", now - 60 + n * 0.2, now - 59 + n * 0.2, 50, now - 59.5, now - 59))
    record = InteractionRecord(
        id="r", started_at=time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now - 5)) + ".000000Z", stream=True,
        total_ms=5000, ttft_ms=300, gen_ms=4600, eval_count=200,
    )  # fmt: skip
    start = time.perf_counter()
    for _ in range(calls):
        for name in ("server_cpu_ms", "energy_j", "gpu_util_mean_pct", "server_rss_max_mb", "power_mean_w"):
            setattr(record, name, None)
        addon.enrich_record(record)
    enrich_us = (time.perf_counter() - start) / calls * 1e6
    log = InteractionLog(Path(tempfile.mkdtemp()))
    start = time.perf_counter()
    for _ in range(calls):
        log.append(record)
    append_us = (time.perf_counter() - start) / calls * 1e6
    state = SimpleNamespace(chunks=101, first_token_at=now - 2.5, response_at=now - 2.6, last_token_at=now)
    builder = SimpleNamespace(record_id="live0", in_flight=lambda: state)
    start = time.perf_counter()
    for _ in range(calls * 100):
        addon.interaction_progressed(builder)  # type: ignore[arg-type]
    progressed_us = (time.perf_counter() - start) / (calls * 100) * 1e6
    return {"enrich_us": enrich_us, "append_us": append_us, "progressed_us": progressed_us}


def ask(client: httpx.Client, tokens: int) -> tuple[float, float]:
    start = time.perf_counter()
    first = None
    body = {"model": MODEL, "prompt": "benchmark", "options": {"num_predict": tokens}}
    with client.stream("POST", "/api/generate", json=body) as response:
        for line in response.iter_lines():
            if first is None and '"response":"' in line and '"response":""' not in line:
                first = time.perf_counter()
    end = time.perf_counter()
    return ((first or end) - start) * 1000, (end - start) * 1000


def proxies(requests: int, tokens: int) -> None:
    port = free_port()
    emulator = subprocess.Popen(
        [sys.executable, "-c", "from analyzer.cli.main import cli; cli()", "emulate", "--port", str(port),
         "--token-ms", "5", "--prefill-ms", "20", "--tokens", str(tokens)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        assert wait_for_port("127.0.0.1", port, 20, emulator)
        upstream = f"http://127.0.0.1:{port}"
        logs = Path(tempfile.mkdtemp())
        configs = {
            "resources=off": {"ollama_resources": "off"},
            "resources=auto 200ms": {"ollama_resources": "auto"},
        }
        running = {
            name: MitmdumpProcess(upstream, options={"ollama_log_dir": str(logs / str(i)), **opts}).start()
            for i, (name, opts) in enumerate(configs.items())
        }
        try:
            time.sleep(2)  # let the samplers open
            clients = {name: httpx.Client(base_url=p.url, timeout=60) for name, p in running.items()}
            for client in clients.values():
                ask(client, tokens)  # warm-up
            cpu_before = {name: p.cpu_seconds() or 0.0 for name, p in running.items()}
            results: dict[str, list[tuple[float, float]]] = {name: [] for name in configs}
            for _ in range(requests):
                for name, client in clients.items():
                    results[name].append(ask(client, tokens))
            cpu = {name: (p.cpu_seconds() or 0.0) - cpu_before[name] for name, p in running.items()}
        finally:
            for p in running.values():
                p.stop()
        base = None
        print(f"\n{requests} requests × {tokens} tokens per configuration, interleaved\n")
        print("| configuration | TTFT p50 ms | TTFT p95 ms | total p50 ms | mitmdump CPU s | CPU vs off |")
        print("|---|---:|---:|---:|---:|---:|")
        for name, rows in results.items():
            ttfts = sorted(r[0] for r in rows)
            totals = [r[1] for r in rows]
            base = base or cpu[name]
            p95 = ttfts[min(len(ttfts) - 1, int(0.95 * len(ttfts)))]
            print(
                f"| {name} | {statistics.median(ttfts):.1f} | {p95:.1f} | {statistics.median(totals):.1f} | "
                f"{cpu[name]:.2f} | {cpu[name] / base:.2f}× |"
            )
    finally:
        emulator.terminate()
        emulator.wait(10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=30)
    parser.add_argument("--tokens", type=int, default=200)
    parser.add_argument("--quick", action="store_true", help="10 requests, 1,000 enrich calls")
    args = parser.parse_args()
    calls = 1000 if args.quick else 5000
    figures = micro(calls)
    print("| traffic-path work (in process) | µs per call |")
    print("|---|---:|")
    ring = "18,000-sample ring, 5 s request, 4 live + 200 recent requests"
    print(f"| `enrich_record` ({ring}) | {figures['enrich_us']:.1f} |")
    print(f"| for scale: the recorder's own `InteractionLog.append` of that record | {figures['append_us']:.1f} |")
    print(f"| `interaction_progressed` (per response fragment) | {figures['progressed_us']:.2f} |")
    proxies(10 if args.quick else args.requests, args.tokens)


if __name__ == "__main__":
    main()
