"""The emulator's scheduler seen through the real proxy: official client → mitmdump + addon → emulator scenario →
records carrying Ollama's counters the way a real server would produce them (the raw material of the report's
cold_load / queueing / stall / context_truncated / length_cutoff findings). Only lower bounds from the configured
sleeps are asserted."""

from __future__ import annotations

import threading

import ollama

from tests.e2e.conftest import MitmdumpFactory

A = "llama3.2:1b"


def test_scheduler_counters_reach_the_log(emulator_factory, mitmdump_factory: MitmdumpFactory) -> None:
    emu = emulator_factory(load_ms=300, num_parallel=1, tokens=12, token_ms=25, prefill_ms=5, num_ctx=16)
    proxy = mitmdump_factory(emu)
    client = ollama.Client(host=f"http://127.0.0.1:{proxy.port}")

    client.generate(model=A, prompt="cold-marker", stream=False)
    first_token = threading.Event()

    def streamed() -> None:
        for _ in client.generate(model=A, prompt="busy-marker", stream=True, options={"emulator_tokens": 40}):
            first_token.set()

    worker = threading.Thread(target=streamed)
    worker.start()
    assert first_token.wait(10)
    client.generate(model=A, prompt="queued-marker", stream=False)
    worker.join(10)
    long_prompt = "long-marker " + " ".join(["word"] * 40)
    list(client.generate(model=A, prompt=long_prompt, stream=True, options={"num_predict": 3}))
    stalled = "stall-marker"
    stall_options = {"emulator_stall_after": 2, "emulator_stall_ms": 400}
    list(client.generate(model=A, prompt=stalled, stream=True, options=stall_options))

    (cold,) = proxy.wait_for("cold-marker")
    assert cold.load_duration_ms is not None and cold.load_duration_ms >= 300
    (queued,) = proxy.wait_for("queued-marker")
    assert None not in (queued.total_duration_ms, queued.prompt_eval_duration_ms, queued.eval_duration_ms)
    hidden = (
        queued.total_duration_ms
        - (queued.load_duration_ms or 0)
        - queued.prompt_eval_duration_ms
        - queued.eval_duration_ms
    )
    assert hidden >= 300 and (queued.load_duration_ms or 0) < hidden  # ≥ 39 × 25 ms remained, minus transit
    (long,) = proxy.wait_for("long-marker")
    assert long.prompt_eval_count == 16 and long.done_reason == "length" and long.eval_count == 3
    (stall,) = proxy.wait_for(stalled)
    assert stall.gap_max_ms is not None and stall.gap_max_ms >= 400
