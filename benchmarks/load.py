"""The addon under load: 200 concurrent streams, ollama_log vs a pass-through mitmdump.

    .venv/bin/python benchmarks/load.py [--concurrent 200] [--rounds 4] [--tokens 200]

Starts the emulator (its own process, realistic pacing) and two mitmdump reverse proxies in front of it,
``pass-through`` (a three-line addon that only streams) and ``ollama_log`` (records every interaction),
then runs rounds of N simultaneous streamed generations against each, alternating which goes first.
Reports TTFT p50/p95 (client clock: from just before the request is sent to the first token line) and
proxy CPU per token (``/proc`` of each mitmdump), and the ratios the issue sets targets for:
TTFT p50 ratio <= 1.05x and extra CPU per token <= 10%.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

import httpx
from proxy_overhead import MODEL, PASS_THROUGH_ADDON, TOKEN_LINE, percentile, start_emulator, start_mitmdump

from analyzer.recorder.process import ADDON_PATH, MitmdumpProcess


async def one_stream(client: httpx.AsyncClient, url: str, prompt: str, tokens: int, start: asyncio.Event) -> float:
    """TTFT in ms of one streamed generation (after ``start`` is set, so all streams begin together)."""
    await start.wait()
    body = {"model": MODEL, "prompt": prompt, "options": {"emulator_tokens": tokens}}
    sent = time.perf_counter()
    first: float | None = None
    count = 0
    pending = b""
    async with client.stream("POST", url + "/api/generate", json=body) as response:
        response.raise_for_status()
        async for data in response.aiter_raw():
            now = time.perf_counter()
            pending += data
            *lines, pending = pending.split(b"\n")
            hits = sum(1 for line in lines if TOKEN_LINE.search(line))
            if hits and first is None:
                first = now
            count += hits
    if count != tokens or first is None:
        raise SystemExit(f"{url}: expected {tokens} token lines, got {count}")
    return (first - sent) * 1000


async def round_of(url: str, n: int, tokens: int, tag: str) -> list[float]:
    limits = httpx.Limits(max_connections=n, max_keepalive_connections=n)
    async with httpx.AsyncClient(timeout=300, limits=limits) as client:
        start = asyncio.Event()
        tasks = [asyncio.create_task(one_stream(client, url, f"{tag} {i}", tokens, start)) for i in range(n)]
        await asyncio.sleep(0.05)
        start.set()
        return list(await asyncio.gather(*tasks))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--concurrent", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=4, help="rounds per configuration")
    parser.add_argument("--tokens", type=int, default=200)
    parser.add_argument("--prefill-ms", type=float, default=20.0)
    parser.add_argument("--token-ms", type=float, default=5.0)
    parser.add_argument(
        "--set",
        dest="settings",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="an ollama_* option for the addon's proxy (repeatable), e.g. --set ollama_resources=off",
    )
    args = parser.parse_args(argv)
    settings = dict(item.split("=", 1) for item in args.settings)
    workdir = Path(tempfile.mkdtemp(prefix="load-bench-"))
    script = workdir / "pass_through.py"
    script.write_text(PASS_THROUGH_ADDON)
    emulator, upstream = start_emulator(workdir, args.prefill_ms, args.token_ms)
    proxies: dict[str, MitmdumpProcess] = {}
    try:
        proxies["pass-through"] = start_mitmdump("pass-through", upstream, workdir, script)
        proxies["ollama_log"] = start_mitmdump("ollama_log", upstream, workdir, ADDON_PATH, settings)
        for name, proxy in proxies.items():  # warm-up: imports, first-flow costs
            asyncio.run(round_of(proxy.url, 20, 10, f"warm-up {name}"))
        ttft: dict[str, list[float]] = {name: [] for name in proxies}
        cpu: dict[str, float] = dict.fromkeys(proxies, 0.0)
        names = list(proxies)
        for i in range(args.rounds):
            for name in names[i % 2 :] + names[: i % 2]:
                before = proxies[name].cpu_seconds() or 0.0
                ttft[name] += asyncio.run(round_of(proxies[name].url, args.concurrent, args.tokens, f"load {i}"))
                cpu[name] += (proxies[name].cpu_seconds() or 0.0) - before
    finally:
        for proxy in proxies.values():
            proxy.stop()
        emulator.stop()
    tokens = args.rounds * args.concurrent * args.tokens
    print(
        f"# {args.rounds} rounds x {args.concurrent} concurrent streams per configuration, {args.tokens} tokens "
        f"each, emulator prefill {args.prefill_ms:g} ms, token {args.token_ms:g} ms, {os.cpu_count()} CPUs, "
        f"Python {sys.version.split()[0]}" + (f"; addon settings {settings}" if settings else "")
    )
    print()
    print("| configuration | TTFT p50 ms | TTFT p95 ms | proxy CPU ms / 200-token stream | proxy CPU µs / token |")
    print("|---|---:|---:|---:|---:|")
    for name in proxies:
        per_stream = cpu[name] * 1000 / (args.rounds * args.concurrent) * (200 / args.tokens)
        print(
            f"| {name} | {percentile(ttft[name], 50):.1f} | {percentile(ttft[name], 95):.1f} | {per_stream:.1f} | "
            f"{cpu[name] * 1e6 / tokens:.1f} |"
        )
    ratio = percentile(ttft["ollama_log"], 50) / percentile(ttft["pass-through"], 50)
    extra = cpu["ollama_log"] / cpu["pass-through"] - 1
    print()
    print(
        f"ollama_log TTFT p50 / pass-through = {ratio:.3f}x  (target <= 1.05x)  {'OK' if ratio <= 1.05 else 'MISSED'}"
    )
    ok = "OK" if extra <= 0.10 else "MISSED"
    print(f"ollama_log CPU per token over pass-through = {extra:+.1%}  (target <= +10%)  {ok}")


if __name__ == "__main__":
    main()
