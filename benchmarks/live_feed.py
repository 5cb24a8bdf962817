"""What the live feed and two attached ``ollama-wire top`` dashboards cost the traffic, and what ``top`` costs.

    .venv/bin/python benchmarks/live_feed.py [--requests 30] [--tokens 200] [--quick]

Starts the emulator (its own process) and two mitmdump reverse proxies with the ollama_log addon in front of it:

- ``addon alone``     ``ollama_live=off``: the recorder as before
- ``addon alone (A/A)`` a second identical one: the difference between the two is the machine's noise floor
- ``addon + 2 readers`` the live feed on, two plain subscriber processes attached (read + apply every event, no
                      drawing): what the feed itself costs the addon
- ``addon + 2 top``   the live feed on, and two real ``ollama-wire top`` processes attached to it, each in its
                      own tmux terminal (150x45), redrawing as they would for a person; on a small machine their
                      drawing competes with the proxy for the same cores

Part 1 streams ``--requests`` generations through each, interleaved round-robin so machine noise hits both alike,
and compares TTFT p50/p95 and the gaps between token lines (client clock; the client of
``benchmarks/proxy_overhead.py``). Targets: TTFT within 1.05x, gap p95 within +0.5 ms.

Part 2 runs 16 concurrent streams (``--long-tokens`` tokens each, paced ``--long-token-ms``) through the feed and
reads the CPU time of one ``top`` process over that window: target <= 10% of one core.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import httpx
import psutil
from proxy_overhead import (
    BIN,
    CONCURRENT,
    Child,
    Results,
    percentile,
    start_emulator,
    stream_once,
)

from analyzer.recorder.process import MitmdumpProcess, ProxyError

SCREEN = ("150", "45")
READER = """
import asyncio, sys
from pathlib import Path
from analyzer.live.subscriber import LiveView, read_events

async def main():
    view = LiveView()
    while True:
        try:
            async for event in read_events(Path(sys.argv[1])):
                view.apply(event)
        except OSError:
            pass
        await asyncio.sleep(0.2)

asyncio.run(main())
"""


def start_proxy(name: str, upstream: str, workdir: Path, live: str) -> MitmdumpProcess:
    options = {"ollama_log_dir": str(workdir / f"log-{name}"), "ollama_live": live, "ollama_console": "false"}
    try:
        return MitmdumpProcess(upstream, options=options, console_path=workdir / f"{name}.out").start()
    except ProxyError as exc:
        raise SystemExit(f"{name}: {exc}") from exc


class TopInTmux:
    """``ollama-wire top`` in a detached tmux session (a real terminal), and its process for CPU readings."""

    def __init__(self, sock: Path, log_dir: Path, ollama: str) -> None:
        self.session = "bench-top-" + uuid.uuid4().hex[:6]
        command = f"{BIN / 'ollama-wire'} top --live {sock} --log-dir {log_dir} --ollama {ollama}"
        subprocess.run(
            ["tmux", "new-session", "-d", "-s", self.session, "-x", SCREEN[0], "-y", SCREEN[1], command],
            check=True,
        )
        self.process = self._find()

    def _find(self) -> psutil.Process:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            pane = subprocess.run(
                ["tmux", "list-panes", "-t", self.session, "-F", "#{pane_pid}"], capture_output=True, text=True
            ).stdout.split()
            if pane:
                root = psutil.Process(int(pane[0]))
                for process in [root, *root.children(recursive=True)]:
                    if any("ollama-wire" in part for part in process.cmdline()):
                        return process
            time.sleep(0.1)
        raise SystemExit("top did not start in tmux")

    def screen(self) -> str:
        return subprocess.run(["tmux", "capture-pane", "-p", "-t", self.session], capture_output=True, text=True).stdout

    def cpu_seconds(self) -> float:
        times = self.process.cpu_times()
        return times.user + times.system

    def close(self) -> None:
        subprocess.run(["tmux", "kill-session", "-t", self.session], capture_output=True)


def wait_attached(tops: list[TopInTmux]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if all("live feed" in top.screen() for top in tops):
            return
        time.sleep(0.2)
    raise SystemExit("top did not attach to the live feed:\n" + tops[0].screen())


def run(args: argparse.Namespace) -> None:
    workdir = Path(tempfile.mkdtemp(prefix="live-feed-bench-"))
    sock = workdir / "live.sock"
    emulator, upstream = start_emulator(workdir, args.prefill_ms, args.token_ms)
    children: list[Child] = [emulator]
    proxies: dict[str, MitmdumpProcess] = {}
    tops: list[TopInTmux] = []
    try:
        readers_sock = workdir / "readers.sock"
        proxies["addon alone"] = start_proxy("alone", upstream, workdir, "off")
        proxies["addon alone (A/A)"] = start_proxy("alone2", upstream, workdir, "off")
        proxies["addon + 2 readers"] = start_proxy("readers", upstream, workdir, str(readers_sock))
        proxies["addon + 2 top"] = start_proxy("top", upstream, workdir, str(sock))
        deadline = time.monotonic() + 15
        while not (sock.exists() and readers_sock.exists()) and time.monotonic() < deadline:
            time.sleep(0.05)
        for i in range(2):
            children.append(Child(f"reader{i}", [sys.executable, "-c", READER, str(readers_sock)], workdir))
        tops = [TopInTmux(sock, workdir / "log-top", upstream) for _ in range(2)]
        wait_attached(tops)
        limits = httpx.Limits(max_connections=CONCURRENT * 2, max_keepalive_connections=CONCURRENT * 2)
        clients = {name: httpx.Client(timeout=300, limits=limits) for name in proxies}
        results = {name: Results() for name in proxies}
        for name, proxy in proxies.items():  # warm-up
            stream_once(clients[name], proxy.url, "warm-up", 10)
        for i in range(0 if args.cpu_only else args.requests):
            order = list(proxies)
            shift = i % len(order)  # rotate who goes first
            for name in order[shift:] + order[:shift]:
                stream = stream_once(clients[name], proxies[name].url, f"bench {i}", args.tokens)
                results[name].ttft_ms.append(stream.ttft_ms)
                results[name].gaps_ms += stream.gaps_ms
        cpu = top_cpu_under_load(args, clients["addon + 2 top"], proxies["addon + 2 top"].url, tops[0])
        for client in clients.values():
            client.close()
        dropped = "see the top header"
        header = tops[0].screen().splitlines()[0] if tops else ""
        if "dropped" in header:
            dropped = header
        if args.cpu_only:
            print(f"top CPU with {CONCURRENT} concurrent streams: {cpu['cpu_percent']:.1f}% of one core")
            return
        report(args, results, cpu, dropped)
    finally:
        for top in tops:
            top.close()
        for proxy in proxies.values():
            proxy.stop()
        for child in reversed(children):
            child.stop()


def top_cpu_under_load(args: argparse.Namespace, client: httpx.Client, url: str, top: TopInTmux) -> dict[str, float]:
    """CPU of one ``top`` while 16 long streams run through the feed (its screen shows all 16 in flight)."""
    body = {
        "model": "llama3.2:1b",
        "prompt": "",
        "options": {"emulator_tokens": args.long_tokens, "emulator_token_ms": args.long_token_ms},
    }
    done = threading.Event()

    def one(i: int) -> None:
        with client.stream("POST", url + "/api/generate", json={**body, "prompt": f"long {i}"}) as response:
            for _ in response.iter_raw():
                pass

    threads = [threading.Thread(target=one, args=(i,)) for i in range(CONCURRENT)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and f"{CONCURRENT} running" not in top.screen():
        time.sleep(0.1)
    seen = CONCURRENT if f"{CONCURRENT} running" in top.screen() else 0
    if os.environ.get("BENCH_SHOW_SCREEN"):
        print(top.screen())
    began_wall, began_cpu = time.monotonic(), top.cpu_seconds()
    time.sleep(args.window_s)
    wall, used = time.monotonic() - began_wall, top.cpu_seconds() - began_cpu
    for thread in threads:
        thread.join(600)
    done.set()
    return {"cpu_percent": used / wall * 100, "window_s": wall, "rows_seen": float(seen)}


def report(args: argparse.Namespace, results: dict[str, Results], cpu: dict[str, float], dropped: str) -> None:
    print(
        f"# {args.requests} sequential streams per configuration, {args.tokens} tokens each, emulator prefill "
        f"{args.prefill_ms:g} ms, token {args.token_ms:g} ms; {os.cpu_count()} CPUs, Python {sys.version.split()[0]}"
    )
    print()
    print("| configuration | TTFT p50 ms | TTFT p95 ms | gap p50 ms | gap p95 ms | gap p99 ms |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, r in results.items():
        print(
            f"| {name} | {percentile(r.ttft_ms, 50):.2f} | {percentile(r.ttft_ms, 95):.2f} | "
            f"{percentile(r.gaps_ms, 50):.2f} | {percentile(r.gaps_ms, 95):.2f} | {percentile(r.gaps_ms, 99):.2f} |"
        )
    alone = results["addon alone"]
    print()
    for name in ("addon alone (A/A)", "addon + 2 readers", "addon + 2 top"):
        fed = results[name]
        ttft50 = percentile(fed.ttft_ms, 50) / percentile(alone.ttft_ms, 50)
        ttft95 = percentile(fed.ttft_ms, 95) / percentile(alone.ttft_ms, 95)
        gap95 = percentile(fed.gaps_ms, 95) - percentile(alone.gaps_ms, 95)
        ok = ttft50 <= 1.05 and gap95 <= 0.5
        print(
            f"{name}: TTFT p50 {ttft50:.3f}x, p95 {ttft95:.3f}x of alone; gap p95 {gap95:+.3f} ms  "
            f"(targets <= 1.05x / +0.5 ms)  {'OK' if ok else 'MISSED'}"
        )
    print(
        f"top CPU with {CONCURRENT} concurrent streams ({cpu['rows_seen']:.0f} running in its header): "
        f"{cpu['cpu_percent']:.1f}% of one core over {cpu['window_s']:.1f} s  (target <= 10%)  "
        f"{'OK' if cpu['cpu_percent'] <= 10 else 'MISSED'}"
    )
    print(f"feed drops: {dropped}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--requests", type=int, default=30, help="sequential streams per configuration")
    parser.add_argument("--tokens", type=int, default=200, help="tokens per stream")
    parser.add_argument("--prefill-ms", type=float, default=20.0, help="emulated prompt processing time")
    parser.add_argument("--token-ms", type=float, default=5.0, help="emulated time per token")
    parser.add_argument("--long-tokens", type=int, default=600, help="tokens per stream in the CPU part")
    parser.add_argument("--long-token-ms", type=float, default=25.0, help="pacing in the CPU part (40 tok/s)")
    parser.add_argument("--window-s", type=float, default=10.0, help="CPU reading window")
    parser.add_argument("--cpu-only", action="store_true", help="only the CPU reading of top (part 2)")
    parser.add_argument("--quick", action="store_true", help="8 requests, 100 tokens, 4 s CPU window")
    args = parser.parse_args(argv)
    if args.quick:
        args.requests, args.tokens, args.window_s, args.long_tokens = 8, 100, 4.0, 300
    run(args)


if __name__ == "__main__":
    main()
