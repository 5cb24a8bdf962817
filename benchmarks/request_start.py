"""How honest the proxy's request start is: proxy-recorded TTFT vs a client-leg tcpdump capture's TTFT.

    sudo .venv/bin/python benchmarks/request_start.py [--rounds 5] [--concurrent 16]

Runs the emulator and mitmdump with the addon, captures the client↔proxy leg on lo with tcpdump, and
sends rounds of N concurrent streamed generations, each on a new connection. Then the capture is analyzed
(the client leg: first request byte → first token line as seen on the wire) and each proxy record is
matched to its capture record by prompt. Prints median and max |proxy ttft − capture ttft| and of the
``started_at`` difference (targets: median <= 2 ms, max <= 10 ms), which source each start came from (its
``start_bound_ms``: the kernel's receive stamp, TCP_INFO, or none) and how many starts were farther from the
capture than their own bound said. Needs root (tcpdump).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path

import httpx
from proxy_overhead import MODEL, start_emulator

from analyzer.pcap.analyze import AnalyzeOptions, analyze_capture
from analyzer.recorder.process import ADDON_PATH, MitmdumpProcess
from analyzer.store.log import read_log

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the checkout: tests.support
from tests.support.tcpdump import tcpdump

SPY = """
import json

def response(flow):
    with open({out!r}, "a") as fh:
        fh.write(json.dumps({{"id": flow.id, "parsed": flow.request.timestamp_start,
                             "accepted": flow.client_conn.timestamp_start,
                             "read": flow.metadata.get("ollama_wire_first_bytes_at")}}) + "\\n")
"""


class SpiedMitmdump(MitmdumpProcess):
    """The addon plus a script reporting mitmproxy's own timestamps per flow, for the side-by-side."""

    def __init__(self, upstream: str, log_dir: Path, spy: Path) -> None:
        super().__init__(upstream, addon=ADDON_PATH, options={"ollama_log_dir": str(log_dir)})
        self.spy = spy

    def command(self) -> list[str]:
        return [*super().command(), "-s", str(self.spy)]


def stream_on_new_connection(url: str, prompt: str, tokens: int, barrier: threading.Barrier) -> None:
    with httpx.Client(timeout=60) as client:  # a client of its own: a new connection
        barrier.wait(30)
        body = {"model": MODEL, "prompt": prompt, "options": {"emulator_tokens": tokens}}
        with client.stream("POST", url + "/api/generate", json=body) as response:
            for _ in response.iter_raw():
                pass


def seconds(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--concurrent", type=int, default=16)
    parser.add_argument("--tokens", type=int, default=50)
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        raise SystemExit("request_start.py: needs root (tcpdump)")
    workdir = Path(tempfile.mkdtemp(prefix="request-start-"))
    emulator, upstream = start_emulator(workdir, 20.0, 5.0)
    try:
        spy, seen_path = workdir / "spy.py", workdir / "seen.jsonl"
        spy.write_text(SPY.format(out=str(seen_path)))
        proxy = SpiedMitmdump(upstream, workdir / "log", spy)
        proxy.start()
        capture = workdir / "client-leg.pcap"
        try:
            with tcpdump(capture, f"tcp port {proxy.port}") as run:
                for r in range(args.rounds):
                    barrier = threading.Barrier(args.concurrent)
                    with ThreadPoolExecutor(args.concurrent) as pool:
                        jobs = [
                            pool.submit(stream_on_new_connection, proxy.url, f"start {r}-{i}", args.tokens, barrier)
                            for i in range(args.concurrent)
                        ]
                        for job in jobs:
                            job.result()
        finally:
            proxy.stop()
    finally:
        emulator.stop()
    wire = {r.prompt: r for r in analyze_capture(capture, AnalyzeOptions(ports=(proxy.port,))).records}
    logged = {r.prompt: r for r in read_log(workdir / "log")}
    spied = {row["id"]: row for row in map(json.loads, seen_path.read_text().splitlines())}
    ttft_diff, start_diff = [], []
    bounds: dict[str, int] = {}
    by_bound: dict[str, list[float]] = {}
    beyond_bound = 0
    estimators: dict[str, list[float]] = {"parse (mitmproxy)": [], "accept": [], "first bytes read": []}
    for prompt, record in logged.items():
        seen = wire.get(prompt)
        if seen is None or record.ttft_ms is None or seen.ttft_ms is None:
            continue
        ttft_diff.append(record.ttft_ms - seen.ttft_ms)
        wire_start = seconds(seen.started_at)
        start_diff.append((seconds(record.started_at) - wire_start) * 1000)
        bounds[str(record.start_bound_ms)] = bounds.get(str(record.start_bound_ms), 0) + 1
        by_bound.setdefault(str(record.start_bound_ms), []).append(start_diff[-1])
        if record.start_bound_ms is not None and abs(start_diff[-1]) > record.start_bound_ms:
            beyond_bound += 1
        row = spied.get(record.id)
        if row and row["read"] is not None:
            for name, key in zip(estimators, ("parsed", "accepted", "read"), strict=True):
                estimators[name].append((row[key] - wire_start) * 1000)
    if not ttft_diff:
        raise SystemExit("no record could be matched to the capture")
    absolute = [abs(d) for d in ttft_diff]
    print(
        f"# {args.rounds} rounds x {args.concurrent} concurrent streams on new connections, {len(ttft_diff)} matched "
        f"(of {len(logged)} logged, {len(wire)} captured; tcpdump dropped {run.dropped}), {os.cpu_count()} CPUs, "
        f"Python {sys.version.split()[0]}; load average {' '.join(f'{v:.2f}' for v in os.getloadavg())}"
    )
    print()
    print("| | median | p95 | max | min |")
    print("|---|---:|---:|---:|---:|")
    q = statistics.quantiles
    print(
        f"| proxy ttft − capture ttft, ms | {statistics.median(ttft_diff):+.3f} | {q(ttft_diff, n=20)[-1]:+.3f} | "
        f"{max(ttft_diff):+.3f} | {min(ttft_diff):+.3f} |"
    )
    print(
        f"| proxy started_at − capture first request byte, ms | {statistics.median(start_diff):+.3f} | "
        f"{q(start_diff, n=20)[-1]:+.3f} | {max(start_diff):+.3f} | {min(start_diff):+.3f} |"
    )
    for name, diffs in estimators.items():
        if len(diffs) >= 2:
            print(
                f"| {name} − capture first request byte, ms | {statistics.median(diffs):+.3f} | "
                f"{q(diffs, n=20)[-1]:+.3f} | {max(diffs):+.3f} | {min(diffs):+.3f} |"
            )
    median_abs, max_abs = statistics.median(absolute), max(absolute)
    print()
    shown = ", ".join(f"{count} with {bound}" for bound, count in sorted(bounds.items()))
    print(f"start_bound_ms: {shown}; {beyond_bound} start(s) farther from the capture than their bound")
    for bound, diffs in sorted(by_bound.items()):
        print(
            f"  bound {bound}: started_at − capture median {statistics.median(diffs):+.3f} ms, "
            f"min {min(diffs):+.3f}, max {max(diffs):+.3f}"
        )
    verdict = "OK" if median_abs <= 2 and max_abs <= 10 else "MISSED"
    print(f"|proxy ttft − capture ttft|: median {median_abs:.3f} ms (target <= 2), max {max_abs:.3f} ms (target <= 10)")
    print(verdict)


if __name__ == "__main__":
    main()
