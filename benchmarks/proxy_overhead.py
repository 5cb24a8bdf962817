"""What putting mitmdump (and the ollama_log addon) between a client and Ollama costs.

    .venv/bin/python benchmarks/proxy_overhead.py [--requests 20] [--tokens 200] [--quick]

One run starts the emulator (``ollama-wire emulate``, its own process, realistic pacing) and three
mitmdump reverse proxies in front of it, then measures, interleaving the configurations round-robin so
that machine noise hits all of them alike:

- ``direct``        client → emulator
- ``pass-through``  mitmdump with a three-line addon that only sets ``flow.response.stream``
- ``ollama_log``    mitmdump -s addons/ollama_log.py (records every interaction)
- ``bare``          mitmdump without addons, for reference: it buffers whole responses

Per configuration: TTFT p50/p95 (client clock, from just before the request is sent to the arrival of
the first line carrying a token), the client-side gaps between token lines (p50/p95/p99), the total
token rate of 16 concurrent streams, and the CPU time each mitmdump process used. The client is raw
httpx on one keep-alive connection per configuration; lines are found by byte search, not JSON
parsing, so the client adds as little as possible to what is measured.

``--load`` measures instead what issue 19 sets targets for: rounds of ``--concurrent`` (200) simultaneous
streams of ``--load-tokens`` (40) tokens against four proxies, two pass-through (A1, A2) and two with the addon's
defaults (B1, B2), interleaved A1 B1 A2 B2 with the order rotated every round, so the A/A and B/B spreads (two
identical proxies) print beside the B/A ratios: proxy CPU per stream (mitmdump; the feeds' companion beside it,
and the sum), TTFT p50 and p95. The machine's load average (``uptime``) is printed with the figures.

Gap distortion is reported as the difference of gap p95s (proxy minus direct), not per token index:
two runs of the same request do not have the same pacing jitter token by token (the emulator sleeps
with asyncio), so pairing gaps by index mostly measures that jitter twice. Comparing the distributions
shows what a client would notice: whether the proxy makes the slow tail of gaps slower.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from analyzer.protocol import timing
from analyzer.recorder.process import ADDON_PATH, MitmdumpProcess, ProxyError

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
MODEL = "llama3.2:1b"
START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 15.0
CONCURRENT = 16

PASS_THROUGH_ADDON = '''"""Minimal streaming addon: forward every response fragment unchanged, as it arrives."""


def responseheaders(flow):
    flow.response.stream = lambda data: data
'''

TOKEN_LINE = re.compile(rb'"response":"(?!")')


# -- processes -----------------------------------------------------------------------------------------------


class Child:
    """A child process whose output goes to a file; ``wait_for`` polls that file (bounded)."""

    def __init__(self, name: str, argv: list[str], workdir: Path) -> None:
        self.name = name
        self.output_path = workdir / f"{name}.out"
        self._output = self.output_path.open("wb")
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.process = subprocess.Popen(
            argv, stdout=self._output, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env, cwd=REPO
        )

    def output(self) -> str:
        return self.output_path.read_text(errors="replace")

    def wait_for(self, pattern: str) -> re.Match[str]:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline and self.process.poll() is None:
            match = re.search(pattern, self.output())
            if match:
                return match
            time.sleep(0.05)
        self.stop()
        raise SystemExit(f"{self.name} did not start:\n{self.output()[-2000:]}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(STOP_TIMEOUT_S)
        self._output.close()


def start_emulator(workdir: Path, prefill_ms: float, token_ms: float) -> tuple[Child, str]:
    argv = [str(BIN / "ollama-wire"), "emulate", "--port", "0", "--prefill-ms", str(prefill_ms)]
    child = Child("emulator", [*argv, "--token-ms", str(token_ms)], workdir)
    return child, child.wait_for(r"listening on (http://\S+)").group(1)


def percentile(values: list[float], pct: float) -> float:
    """Linear-interpolated percentile of ``values`` in any order (the product's, which needs them sorted)."""
    return timing.percentile(sorted(values), pct)


def start_mitmdump(
    name: str, upstream: str, workdir: Path, script: Path | None, settings: dict[str, str] | None = None
) -> MitmdumpProcess:
    """One of the proxies under test, via the project's own mitmdump runner (bound to a free port).

    ``settings`` are extra ``ollama_*`` options for the addon (e.g. ``{"ollama_resources": "off"}``)."""
    options = {"ollama_log_dir": str(workdir / "log"), **(settings or {})} if script == ADDON_PATH else {}
    try:
        return MitmdumpProcess(upstream, addon=script, options=options, console_path=workdir / f"{name}.out").start()
    except ProxyError as exc:
        raise SystemExit(f"{name}: {exc}") from exc


# -- measuring -----------------------------------------------------------------------------------------------


@dataclass
class Stream:
    """One streamed generation as the client saw it (perf_counter seconds)."""

    sent: float
    token_times: list[float]
    ended: float

    @property
    def ttft_ms(self) -> float:
        return (self.token_times[0] - self.sent) * 1000

    @property
    def gaps_ms(self) -> list[float]:
        return [(b - a) * 1000 for a, b in zip(self.token_times, self.token_times[1:], strict=False)]


@dataclass
class Results:
    ttft_ms: list[float] = field(default_factory=list)
    gaps_ms: list[float] = field(default_factory=list)
    rates: list[float] = field(default_factory=list)
    cpu_s: float | None = None


def stream_once(client: httpx.Client, url: str, prompt: str, tokens: int) -> Stream:
    body = {"model": MODEL, "prompt": prompt, "options": {"emulator_tokens": tokens}}
    times: list[float] = []
    pending = b""
    sent = time.perf_counter()
    with client.stream("POST", url + "/api/generate", json=body) as response:
        response.raise_for_status()
        for data in response.iter_raw():
            now = time.perf_counter()
            pending += data
            *lines, pending = pending.split(b"\n")
            times += [now for line in lines if TOKEN_LINE.search(line)]
    if len(times) != tokens:
        raise SystemExit(f"{url}: expected {tokens} token lines, got {len(times)}")
    return Stream(sent, times, time.perf_counter())


def concurrent_rate(client: httpx.Client, url: str, prompt: str, tokens: int) -> float:
    """Total tokens per second of ``CONCURRENT`` simultaneous streams (first send to last byte)."""
    barrier = threading.Barrier(CONCURRENT)

    def run(i: int) -> Stream:
        barrier.wait(START_TIMEOUT_S)
        return stream_once(client, url, f"{prompt} #{i}", tokens)

    with ThreadPoolExecutor(CONCURRENT) as pool:
        streams = list(pool.map(run, range(CONCURRENT)))
    elapsed = max(s.ended for s in streams) - min(s.sent for s in streams)
    return CONCURRENT * tokens / elapsed


def load_average() -> str:
    return "load average " + " ".join(f"{value:.2f}" for value in os.getloadavg())


def run_load(args: argparse.Namespace) -> None:
    """A1 B1 A2 B2 at ``args.concurrent`` simultaneous streams: see the module docstring."""
    import asyncio

    from load import round_of  # benchmarks/load.py: N streams released together (one asyncio client)

    workdir = Path(tempfile.mkdtemp(prefix="proxy-load-"))
    script = workdir / "pass_through.py"
    script.write_text(PASS_THROUGH_ADDON)
    settings = dict(item.split("=", 1) for item in args.settings)
    emulator, upstream = start_emulator(workdir, args.prefill_ms, args.token_ms)
    proxies: dict[str, MitmdumpProcess] = {}
    print(f"# start: {load_average()}")
    try:
        for name in ("A1", "B1", "A2", "B2"):
            addon = script if name.startswith("A") else ADDON_PATH
            own = {"ollama_live": str(workdir / f"{name}.sock")}  # two live feeds cannot share the default socket
            proxies[name] = start_mitmdump(name, upstream, workdir, addon, {**own, **settings})
        for name, proxy in proxies.items():  # warm-up: imports, first-flow costs
            asyncio.run(round_of(proxy.url, 20, 10, f"warm-up {name}"))
        ttft: dict[str, list[float]] = {name: [] for name in proxies}
        cpu = dict.fromkeys(proxies, 0.0)
        companion = dict.fromkeys(proxies, 0.0)
        names = list(proxies)
        for i in range(args.rounds):
            shift = i % len(names)
            for name in names[shift:] + names[:shift]:
                proxy = proxies[name]
                before, side_before = proxy.cpu_seconds() or 0.0, proxy.companion_cpu_seconds() or 0.0
                ttft[name] += asyncio.run(round_of(proxy.url, args.concurrent, args.load_tokens, f"load {i}"))
                time.sleep(0.3)  # records finish and reach the companion inside this proxy's window
                cpu[name] += (proxy.cpu_seconds() or 0.0) - before
                companion[name] += (proxy.companion_cpu_seconds() or 0.0) - side_before
    finally:
        for proxy in proxies.values():
            proxy.stop()
        emulator.stop()
    streams = args.rounds * args.concurrent
    print(
        f"# {args.rounds} rounds x {args.concurrent} concurrent streams per proxy, {args.load_tokens} tokens each, "
        f"emulator prefill {args.prefill_ms:g} ms, token {args.token_ms:g} ms, {os.cpu_count()} CPUs, "
        f"Python {sys.version.split()[0]}; A = pass-through, B = ollama_log"
        + (f" with {settings}" if settings else " (defaults)")
        + f"; end: {load_average()}"
    )
    print()
    print("| proxy | TTFT p50 ms | TTFT p95 ms | mitmdump CPU ms/stream | companion CPU ms/stream | sum ms/stream |")
    print("|---|---:|---:|---:|---:|---:|")
    for name in proxies:
        per, side = cpu[name] * 1000 / streams, companion[name] * 1000 / streams
        print(
            f"| {name} | {percentile(ttft[name], 50):.1f} | {percentile(ttft[name], 95):.1f} | {per:.2f} | "
            f"{side:.2f} | {per + side:.2f} |"
        )

    def pair(values: dict[str, float]) -> tuple[float, float, float]:
        """B/A ratio of the pooled figures, and the A/A and B/B spreads (|first/second - 1|)."""
        a = values["A1"] + values["A2"]
        b = values["B1"] + values["B2"]
        return b / a, abs(values["A1"] / values["A2"] - 1), abs(values["B1"] / values["B2"] - 1)

    p50 = {name: percentile(v, 50) for name, v in ttft.items()}
    p95 = {name: percentile(v, 95) for name, v in ttft.items()}
    summed = {name: cpu[name] + companion[name] for name in proxies}
    print()
    for label, values, target in (
        ("mitmdump CPU per stream", cpu, 1.10),
        ("mitmdump + companion CPU per stream", summed, None),
        ("TTFT p50", p50, 1.05),
        ("TTFT p95", p95, None),
    ):
        ratio, spread_a, spread_b = pair(values)
        verdict = "" if target is None else f"  (target <= {target:.2f}x)  {'OK' if ratio <= target else 'MISSED'}"
        print(f"{label}: B/A = {ratio:.3f}x   A/A spread {spread_a:.1%}, B/B spread {spread_b:.1%}{verdict}")


def run(args: argparse.Namespace) -> None:
    workdir = Path(tempfile.mkdtemp(prefix="proxy-overhead-"))
    script = workdir / "pass_through.py"
    script.write_text(PASS_THROUGH_ADDON)
    children: list[Child] = []
    proxies: dict[str, MitmdumpProcess] = {}
    try:
        emulator, upstream = start_emulator(workdir, args.prefill_ms, args.token_ms)
        children.append(emulator)
        urls: dict[str, str] = {"direct": upstream}
        for name, addon in (("pass-through", script), ("ollama_log", ADDON_PATH), ("bare", None)):
            proxies[name] = start_mitmdump(name, upstream, workdir, addon)
            urls[name] = proxies[name].url
        limits = httpx.Limits(max_connections=CONCURRENT * 2, max_keepalive_connections=CONCURRENT * 2)
        clients = {name: httpx.Client(timeout=120, limits=limits) for name in urls}
        results = {name: Results() for name in urls}
        cpu_before = {name: child.cpu_seconds() for name, child in proxies.items()}

        for name, url in urls.items():  # warm-up: connections, imports, first-flow costs
            stream_once(clients[name], url, "warm-up", 10)

        def each_round(rounds: int, measure: Callable[[str, int], None]) -> None:
            for i in range(rounds):
                order = list(urls)
                shift = i % len(order)  # rotate who goes first, too
                for name in order[shift:] + order[:shift]:
                    measure(name, i)

        def one(name: str, i: int) -> None:
            stream = stream_once(clients[name], urls[name], f"bench {i}", args.tokens)
            results[name].ttft_ms.append(stream.ttft_ms)
            results[name].gaps_ms += stream.gaps_ms

        def many(name: str, i: int) -> None:
            results[name].rates.append(concurrent_rate(clients[name], urls[name], f"load {i}", args.tokens))

        each_round(args.requests, one)
        each_round(args.rounds, many)
        for name, child in proxies.items():
            after, before = child.cpu_seconds(), cpu_before[name]
            results[name].cpu_s = after - before if after is not None and before is not None else None
        for client in clients.values():
            client.close()
        report(args, results)
    finally:
        for proxy in proxies.values():
            proxy.stop()
        for child in reversed(children):
            child.stop()


def report(args: argparse.Namespace, results: dict[str, Results]) -> None:
    streams = args.requests + args.rounds * CONCURRENT
    print(
        f"# {args.requests} sequential streams + {args.rounds}x{CONCURRENT} concurrent per configuration, "
        f"{args.tokens} tokens each, emulator prefill {args.prefill_ms:g} ms, token {args.token_ms:g} ms, "
        f"{os.cpu_count()} CPUs, Python {sys.version.split()[0]}"
    )
    print()
    header = (
        "| configuration | TTFT p50 ms | TTFT p95 ms | gap p50 ms | gap p95 ms | gap p99 ms | "
        "Δ gap p95 vs direct ms | 16-stream tok/s | proxy CPU ms/stream |"
    )
    print(header)
    print("|---|" + "---:|" * 8)
    direct_gap95 = percentile(sorted(results["direct"].gaps_ms), 95)
    for name, r in results.items():
        gap95 = percentile(sorted(r.gaps_ms), 95)
        cpu = f"{r.cpu_s * 1000 / streams:.1f}" if r.cpu_s is not None else "-"
        if percentile(sorted(r.gaps_ms), 50) == 0:  # every token arrived in one burst: there are no gaps to compare
            gaps = "burst | burst | burst | -"
        else:
            gaps = (
                f"{percentile(sorted(r.gaps_ms), 50):.2f} | {gap95:.2f} | {percentile(sorted(r.gaps_ms), 99):.2f} | "
                f"{gap95 - direct_gap95:+.2f}"
            )
        print(
            f"| {name} | {percentile(sorted(r.ttft_ms), 50):.2f} | {percentile(sorted(r.ttft_ms), 95):.2f} | {gaps} | "
            f"{sum(r.rates) / len(r.rates):.0f} | {cpu} |"
        )
    addon, passthrough = results["ollama_log"], results["pass-through"]
    ttft_ratio = percentile(sorted(addon.ttft_ms), 50) / percentile(sorted(passthrough.ttft_ms), 50)
    gap_delta = percentile(sorted(addon.gaps_ms), 95) - direct_gap95
    rate_ratio = (sum(addon.rates) / len(addon.rates)) / (sum(passthrough.rates) / len(passthrough.rates))
    print()
    print(
        f"ollama_log TTFT p50 / pass-through TTFT p50 = {ttft_ratio:.3f}x  (target <= 1.1x)  "
        f"{'OK' if ttft_ratio <= 1.1 else 'MISSED'}"
    )
    print(
        f"ollama_log gap p95 - direct gap p95 = {gap_delta:+.2f} ms  (target <= 1 ms)  "
        f"{'OK' if gap_delta <= 1.0 else 'MISSED'}"
    )
    print(f"ollama_log 16-stream tok/s / pass-through = {rate_ratio:.3f}x")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--requests", type=int, default=20, help="sequential streams per configuration")
    parser.add_argument("--tokens", type=int, default=200, help="tokens per stream")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of 16 concurrent streams per configuration")
    parser.add_argument("--prefill-ms", type=float, default=20.0, help="emulated prompt processing time")
    parser.add_argument("--token-ms", type=float, default=5.0, help="emulated time per token")
    parser.add_argument("--quick", action="store_true", help="5 requests, 100 tokens, 1 concurrent round")
    parser.add_argument("--load", action="store_true", help="A1 B1 A2 B2 at --concurrent streams released together")
    parser.add_argument("--concurrent", type=int, default=200, help="--load: simultaneous streams per round")
    parser.add_argument("--load-tokens", type=int, default=40, help="--load: tokens per stream")
    parser.add_argument(
        "--set",
        dest="settings",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="--load: an ollama_* option for the B proxies (repeatable), e.g. --set ollama_resources=off",
    )
    args = parser.parse_args(argv)
    if args.load:
        run_load(args)
        return
    if args.quick:
        args.requests, args.tokens, args.rounds = 5, 100, 1
    if args.requests < 1 or args.tokens < 2 or args.rounds < 1:
        parser.error("--requests and --rounds must be >= 1, --tokens >= 2")
    run(args)


if __name__ == "__main__":
    main()
