"""Load: 200 concurrent streams through a real mitmdump with the addon, to the emulator.

Every interaction is recorded exactly once with the text its client received, and the mitmdump
process's memory does not grow from one burst to the next (the addon keeps nothing per finished flow).
No speed is asserted here: benchmarks/load.py measures TTFT and CPU against a pass-through proxy.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import ollama

from analyzer.emulator import EmulatorThread
from analyzer.store.log import read_log

MODEL = "llama3.2:1b"
CONCURRENT = 200
TOKENS = 8
# RSS noise allowed between bursts: allocator arenas and mitmproxy's own caches settle in steps.
RSS_SLACK_BYTES = 24 << 20


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


async def burst(url: str, tag: str) -> dict[str, str]:
    """``CONCURRENT`` streamed generations at once (the official async client); prompt → text received."""
    client = ollama.AsyncClient(host=url, timeout=120)

    async def one(i: int) -> tuple[str, str]:
        prompt = f"{tag} stream {i}"
        parts = await client.generate(model=MODEL, prompt=prompt, stream=True, options={"emulator_tokens": TOKENS})
        return prompt, "".join([part.response async for part in parts])

    return dict(await asyncio.gather(*(one(i) for i in range(CONCURRENT))))


def wait_for_records(log_dir: Path, tag: str, count: int, bound_s: float = 60.0) -> list:
    import time

    deadline = time.monotonic() + bound_s
    while True:
        found = [r for r in read_log(log_dir) if r.prompt and r.prompt.startswith(f"{tag} ")]
        if len(found) >= count or time.monotonic() > deadline:
            return found
        time.sleep(0.1)


def test_200_concurrent_streams_recorded_once_each_and_memory_settles(
    emulator: EmulatorThread, mitmdump_factory: Any
) -> None:
    proxy = mitmdump_factory(emulator)
    assert proxy.process is not None
    rss: list[int] = []
    for round_ in range(2):
        tag = f"load{round_}"
        sent = asyncio.run(burst(proxy.url, tag))
        records = wait_for_records(proxy.log_dir, tag, CONCURRENT)
        assert len(records) == CONCURRENT, f"{tag}: {len(records)} records"
        by_prompt = {r.prompt: r for r in records}
        assert len(by_prompt) == CONCURRENT  # exactly once each
        for prompt, text in sent.items():
            record = by_prompt[prompt]
            assert record.response_text == text and record.complete and not record.flags, prompt
            assert record.eval_count == TOKENS
        rss.append(rss_bytes(proxy.process.pid))
    # The first burst sets the baseline (imports, connection pools, allocator arenas); a second burst of the
    # same load must not grow it further.
    print("mitmdump RSS MB after each burst:", [r >> 20 for r in rss])
    assert rss[1] <= rss[0] + RSS_SLACK_BYTES, [r >> 20 for r in rss]
