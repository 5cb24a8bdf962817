"""What the fleet export (OTLP + Prometheus) costs the streams going through the addon.

    .venv/bin/python benchmarks/export_overhead.py [--requests 40] [--tokens 200] [--quick]

Same method as ``proxy_overhead.py``: the emulator in its own process with realistic pacing, several mitmdump
reverse proxies in front of it, raw httpx clients, configurations measured round-robin so machine noise hits
them alike. The configurations:

- ``ollama_log``        the addon alone (no export)
- ``ollama_log, again`` the same configuration once more: the noise floor (an A/A comparison)
- ``export``            the addon with ``ollama_otlp_endpoint`` (a local OTLP receiver process answering 200)
                        and ``ollama_prometheus`` (scraped by this script every ``--scrape-s`` seconds, 15 by
                        default), OTLP metrics every ``--metric-interval-ms`` (the SDK's 60000 by default;
                        ``--stress`` sets both to 1 s)
- ``export, down``      the same with nobody listening at the OTLP endpoint (every export fails, drops counted)

Reported per configuration: client-side TTFT p50/p95 and token gap p50/p95, 16-stream tok/s, proxy CPU per
stream; then ``export`` vs ``ollama_log``: TTFT p95 ratio (target ≤ 1.05×) and gap p95 difference (target
≤ +0.5 ms).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import urllib.request
from pathlib import Path

import httpx
from proxy_overhead import (
    CONCURRENT,
    Child,
    Results,
    concurrent_rate,
    percentile,
    start_emulator,
    stream_once,
)

from analyzer.recorder.process import MitmdumpProcess, ProxyError, free_port

RECEIVER = """
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

server = ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler)
print("receiving", flush=True)
server.serve_forever()
"""


def scrape_forever(url: str, every_s: float, stop: threading.Event, pages: list[int]) -> None:
    while not stop.wait(every_s):
        try:
            pages.append(len(urllib.request.urlopen(url, timeout=5).read()))
        except OSError:
            pages.append(-1)


def run(args: argparse.Namespace) -> None:
    workdir = Path(tempfile.mkdtemp(prefix="export-overhead-"))
    (workdir / "receiver.py").write_text(RECEIVER)
    children: list[Child] = []
    proxies: dict[str, MitmdumpProcess] = {}
    stop = threading.Event()
    pages: list[int] = []
    os.environ["OTEL_METRIC_EXPORT_INTERVAL"] = str(args.metric_interval_ms)  # inherited by mitmdump
    try:
        emulator, upstream = start_emulator(workdir, args.prefill_ms, args.token_ms)
        children.append(emulator)
        receiver_port = free_port()
        receiver = Child("receiver", [sys.executable, str(workdir / "receiver.py"), str(receiver_port)], workdir)
        children.append(receiver)
        receiver.wait_for("receiving")
        metrics_port = free_port()
        configs = {
            "ollama_log": {},
            "ollama_log, again": {},  # the same again: how far two identical proxies differ here (noise)
            "export": {
                "ollama_otlp_endpoint": f"http://127.0.0.1:{receiver_port}",
                "ollama_prometheus": f"127.0.0.1:{metrics_port}",
            },
            "export, down": {
                "ollama_otlp_endpoint": f"http://127.0.0.1:{free_port()}",
                "ollama_prometheus": f"127.0.0.1:{free_port()}",
            },
        }
        for n, (name, options) in enumerate(configs.items()):
            settings = {"ollama_log_dir": str(workdir / f"log{n}"), "ollama_console": "false", **options}
            try:
                proxies[name] = MitmdumpProcess(
                    upstream, options=settings, console_path=workdir / f"proxy{n}.out"
                ).start()
            except ProxyError as exc:
                raise SystemExit(f"{name}: {exc}") from exc
        scraper = threading.Thread(
            target=scrape_forever,
            args=(f"http://127.0.0.1:{metrics_port}/metrics", args.scrape_s, stop, pages),
            daemon=True,
        )
        scraper.start()
        limits = httpx.Limits(max_connections=CONCURRENT * 2, max_keepalive_connections=CONCURRENT * 2)
        clients = {name: httpx.Client(timeout=120, limits=limits) for name in proxies}
        results = {name: Results() for name in proxies}
        cpu_before = {name: proxy.cpu_seconds() for name, proxy in proxies.items()}
        for name, proxy in proxies.items():
            stream_once(clients[name], proxy.url, "warm-up", 10)
        order = list(proxies)
        for i in range(args.requests):
            shift = i % len(order)
            for name in order[shift:] + order[:shift]:
                stream = stream_once(clients[name], proxies[name].url, f"bench {i}", args.tokens)
                results[name].ttft_ms.append(stream.ttft_ms)
                results[name].gaps_ms += stream.gaps_ms
        for i in range(args.rounds):
            shift = i % len(order)
            for name in order[shift:] + order[:shift]:
                results[name].rates.append(concurrent_rate(clients[name], proxies[name].url, f"load {i}", args.tokens))
        for name, proxy in proxies.items():
            after, before = proxy.cpu_seconds(), cpu_before[name]
            results[name].cpu_s = after - before if after is not None and before is not None else None
        for client in clients.values():
            client.close()
        report(args, results, pages)
    finally:
        stop.set()
        for proxy in proxies.values():
            proxy.stop()
        for child in reversed(children):
            child.stop()


def report(args: argparse.Namespace, results: dict[str, Results], pages: list[int]) -> None:
    streams = args.requests + args.rounds * CONCURRENT
    print(
        f"# {args.requests} sequential streams + {args.rounds}x{CONCURRENT} concurrent per configuration, "
        f"{args.tokens} tokens each, emulator prefill {args.prefill_ms:g} ms, token {args.token_ms:g} ms, "
        f"{os.cpu_count()} CPUs, Python {sys.version.split()[0]}; /metrics scraped every {args.scrape_s:g} s "
        f"({len(pages)} times), OTLP metrics every {args.metric_interval_ms / 1000:g} s"
    )
    print()
    print(
        "| configuration | TTFT p50 ms | TTFT p95 ms | gap p50 ms | gap p95 ms | 16-stream tok/s "
        "| proxy CPU ms/stream |"
    )
    print("|---|" + "---:|" * 6)
    for name, r in results.items():
        cpu = f"{r.cpu_s * 1000 / streams:.1f}" if r.cpu_s is not None else "-"
        print(
            f"| {name} | {percentile(r.ttft_ms, 50):.2f} | {percentile(r.ttft_ms, 95):.2f} | "
            f"{percentile(r.gaps_ms, 50):.2f} | {percentile(r.gaps_ms, 95):.2f} | "
            f"{sum(r.rates) / len(r.rates):.0f} | {cpu} |"
        )
    base = results["ollama_log"]
    print()
    for name in ("ollama_log, again", "export", "export, down"):
        r = results[name]
        ratio = percentile(r.ttft_ms, 95) / percentile(base.ttft_ms, 95)
        delta = percentile(r.gaps_ms, 95) - percentile(base.gaps_ms, 95)
        print(
            f"{name}: TTFT p95 / ollama_log TTFT p95 = {ratio:.3f}x (target <= 1.05x) "
            f"{'OK' if ratio <= 1.05 else 'MISSED'}; gap p95 - ollama_log gap p95 = {delta:+.2f} ms "
            f"(target <= +0.5 ms) {'OK' if delta <= 0.5 else 'MISSED'}"
        )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--requests", type=int, default=40, help="sequential streams per configuration")
    parser.add_argument("--tokens", type=int, default=200, help="tokens per stream")
    parser.add_argument("--rounds", type=int, default=2, help="rounds of 16 concurrent streams per configuration")
    parser.add_argument("--prefill-ms", type=float, default=20.0, help="emulated prompt processing time")
    parser.add_argument("--token-ms", type=float, default=5.0, help="emulated time per token")
    parser.add_argument("--scrape-s", type=float, default=15.0, help="seconds between scrapes of /metrics")
    parser.add_argument("--metric-interval-ms", type=int, default=60000, help="OTLP metric export interval")
    parser.add_argument("--stress", action="store_true", help="scrape and export metrics every second")
    parser.add_argument("--quick", action="store_true", help="6 requests, 100 tokens, 1 concurrent round")
    args = parser.parse_args(argv)
    if args.quick:
        args.requests, args.tokens, args.rounds = 6, 100, 1
    if args.stress:
        args.scrape_s, args.metric_interval_ms = 1.0, 1000
    if args.requests < 1 or args.tokens < 2 or args.rounds < 1:
        parser.error("--requests and --rounds must be >= 1, --tokens >= 2")
    run(args)


if __name__ == "__main__":
    main()
