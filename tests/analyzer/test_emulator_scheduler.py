"""The emulator's scheduler over real HTTP: counters computed the way Ollama computes them.

Ollama (server/routes.go, server/sched.go, llm/server.go): ``load_duration`` = arrival → runner assigned
(loading, or waiting for a busy model to be evicted); the wait for a parallel slot comes after that and before
prompt evaluation, so it is in ``total_duration`` only. The lower bounds asserted below follow from the
configured sleeps (they cannot be shorter), never from how fast this machine is.
"""

from __future__ import annotations

import itertools
import threading
import time
from datetime import UTC, datetime
from typing import Any

import httpx
import ollama
import openai
import pytest

from analyzer.cli.emulate import parse_keep_alive, parse_profile, parse_size
from analyzer.emulator import EmulatorThread
from analyzer.emulator.config import GIB, ModelProfile
from analyzer.emulator.wire import go_duration_s

A, B = "llama3.2:1b", "qwen3:0.6b"
MS = 1_000_000  # nanoseconds


def generate(emu: EmulatorThread, model: str = A, prompt: str = "hello there", **fields: Any) -> dict[str, Any]:
    """One non-streamed /api/generate reply as a dict."""
    return ollama.Client(host=emu.url).generate(model=model, prompt=prompt, stream=False, **fields).model_dump()


def ps(emu: EmulatorThread) -> dict[str, dict[str, Any]]:
    """/api/ps as {name: entry}."""
    return {m["name"]: m for m in httpx.get(f"{emu.url}/api/ps").json()["models"]}


def expires_in_s(entry: dict[str, Any]) -> float:
    stamp = entry["expires_at"]
    whole, _, fraction = stamp.rstrip("Z").partition(".")
    moment = datetime.fromisoformat(whole).replace(tzinfo=UTC).timestamp() + float(f"0.{fraction or 0}")
    return moment - time.time()


def hidden_wait_ns(reply: dict[str, Any]) -> int:
    return int(
        reply["total_duration"] - reply["load_duration"] - reply["prompt_eval_duration"] - reply["eval_duration"]
    )


def test_first_use_loads_then_model_is_warm(emulator_factory) -> None:
    emu = emulator_factory(load_ms=400)
    assert ps(emu) == {}
    cold = generate(emu)
    warm = generate(emu)
    assert cold["load_duration"] >= 400 * MS
    assert cold["total_duration"] >= cold["load_duration"] + cold["prompt_eval_duration"] + cold["eval_duration"]
    assert warm["load_duration"] < cold["load_duration"] - 200 * MS
    entry = ps(emu)[A]
    assert entry["size"] == entry["size_vram"] == 2 * GIB
    assert 250 < expires_in_s(entry) <= 301  # default keep_alive 5m, counted from the end of the last request


def test_queued_request_wait_is_in_total_duration_only(emulator_factory) -> None:
    emu = emulator_factory(num_parallel=1, tokens=12, token_ms=25, prefill_ms=5)
    first_token = threading.Event()
    replies: dict[str, Any] = {}

    def streamed() -> None:
        options = {"emulator_tokens": 30}
        for part in ollama.Client(host=emu.url).generate(model=A, prompt="first", stream=True, options=options):
            first_token.set()
            if part.done:
                replies["first"] = part.model_dump()

    worker = threading.Thread(target=streamed)
    worker.start()
    assert first_token.wait(10)
    second = generate(emu, prompt="second")  # arrives while the only slot generates 29 more tokens
    worker.join(10)
    first = replies["first"]
    wait = hidden_wait_ns(second)
    assert wait >= 300 * MS  # ≥ 29 × 25 ms of the first request remained, minus the client's own latency
    assert second["load_duration"] < wait and second["prompt_eval_duration"] < wait
    assert second["eval_duration"] >= 12 * 25 * MS
    assert hidden_wait_ns(first) < wait


def test_parallel_slots_do_not_queue(emulator_factory) -> None:
    emu = emulator_factory(num_parallel=2, tokens=12, token_ms=25, prefill_ms=5)
    results: list[dict[str, Any]] = []
    threads = [threading.Thread(target=lambda: results.append(generate(emu, prompt="p"))) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert len(results) == 2
    # each ran at once: no one waited a whole generation (12 × 25 ms) for a slot
    assert all(hidden_wait_ns(r) < r["eval_duration"] for r in results)


def test_keep_alive_zero_unloads_and_minus_one_is_forever(emulator_factory) -> None:
    emu = emulator_factory()
    generate(emu, keep_alive=0)
    assert ps(emu) == {}
    generate(emu, keep_alive=-1)
    assert datetime.fromisoformat(ps(emu)[A]["expires_at"][:19]).year > 2300
    generate(emu, model=B, keep_alive="10m")
    assert 550 < expires_in_s(ps(emu)[B]) <= 601
    assert list(ps(emu)) == [A, B]  # latest expiry first, like Ollama


def test_keep_alive_expiry_unloads(emulator_factory) -> None:
    emu = emulator_factory(keep_alive_s=1.0)
    generate(emu)
    assert A in ps(emu)
    time.sleep(1.3)
    assert ps(emu) == {}


def test_bad_keep_alive_is_400(emulator_factory) -> None:
    emu = emulator_factory()
    with pytest.raises(ollama.ResponseError) as error:
        generate(emu, keep_alive="300")  # Go's ParseDuration wants a unit
    assert error.value.status_code == 400 and "missing unit" in error.value.error


def test_empty_prompt_loads_and_keep_alive_zero_unloads(emulator_factory) -> None:
    emu = emulator_factory(load_ms=200)
    started = time.monotonic()
    loaded = generate(emu, prompt="")
    assert time.monotonic() - started >= 0.2
    assert loaded["done_reason"] == "load" and A in ps(emu)
    assert generate(emu)["load_duration"] < 150 * MS  # now warm
    chat = ollama.Client(host=emu.url).chat(model=B, messages=[]).model_dump()
    assert chat["done_reason"] == "load" and B in ps(emu)
    unloaded = generate(emu, prompt="", keep_alive=0)
    assert unloaded["done_reason"] == "unload" and list(ps(emu)) == [B]


def test_max_loaded_models_evicts_and_reloads(emulator_factory) -> None:
    emu = emulator_factory(load_ms=150, max_loaded_models=1)
    loads = [generate(emu, model=m)["load_duration"] for m in (A, B, A)]
    assert all(load >= 150 * MS for load in loads)  # every switch is a cold load
    assert list(ps(emu)) == [A]
    roomy = emulator_factory(load_ms=250, max_loaded_models=2)
    loads = [generate(roomy, model=m)["load_duration"] for m in (A, B, A)]
    assert loads[2] < 150 * MS and set(ps(roomy)) == {A, B}


def test_memory_evicts_when_models_do_not_fit_together(emulator_factory) -> None:
    emu = emulator_factory(memory=5 * GIB, profiles={A: {"size": 3 * GIB}, B: ModelProfile(size=3 * GIB)})
    generate(emu, model=A)
    generate(emu, model=B)
    assert list(ps(emu)) == [B]


def test_eviction_waits_for_busy_model_inside_load_duration(emulator_factory) -> None:
    emu = emulator_factory(max_loaded_models=1, load_ms=50, tokens=12, token_ms=25, prefill_ms=5)
    generate(emu, model=B)  # warm B, so the first request below does not load
    first_token = threading.Event()
    done = threading.Event()

    def streamed() -> None:
        options = {"emulator_tokens": 40}
        for _ in ollama.Client(host=emu.url).generate(model=B, prompt="busy", stream=True, options=options):
            first_token.set()
        done.set()

    worker = threading.Thread(target=streamed)
    worker.start()
    assert first_token.wait(10)
    other = generate(emu, model=A)  # needs B's place, B is busy for ≥ 39 × 25 ms more
    worker.join(10)
    assert done.is_set()
    assert other["load_duration"] >= 50 * MS + 250 * MS  # its own load + most of that wait
    assert hidden_wait_ns(other) < other["load_duration"]


def test_out_of_memory_is_a_500_with_ollamas_message(emulator_factory) -> None:
    emu = emulator_factory(profiles={"big:70b": {"size": 40 * GIB}, B: {"oom": True, "size": 6 * GIB}})
    with pytest.raises(ollama.ResponseError) as error:
        generate(emu, model="big:70b")
    assert error.value.status_code == 500
    assert error.value.error == "model requires more system memory (40.0 GiB) than is available (16.0 GiB)"
    with pytest.raises(ollama.ResponseError) as error:
        generate(emu, model=B)
    assert error.value.error.startswith("model requires more system memory (6.0 GiB) than is available (")
    assert ps(emu) == {}
    with pytest.raises(openai.InternalServerError):
        openai.OpenAI(base_url=f"{emu.url}/v1", api_key="x").chat.completions.create(
            model="big:70b", messages=[{"role": "user", "content": "hi"}]
        )


def test_num_ctx_pins_prompt_eval_count(emulator_factory) -> None:
    emu = emulator_factory(num_ctx=32)
    long_prompt = " ".join(["word"] * 100)
    assert generate(emu, prompt="a b c")["prompt_eval_count"] == 4
    assert generate(emu, prompt=long_prompt)["prompt_eval_count"] == 32
    assert generate(emu, prompt=long_prompt, options={"num_ctx": 64})["prompt_eval_count"] == 64
    assert generate(emu, prompt=long_prompt, options={"num_ctx": 4096})["prompt_eval_count"] == 101
    assert ps(emu)[A]["context_length"] == 4096


def test_other_num_ctx_reloads_the_model(emulator_factory) -> None:
    emu = emulator_factory(load_ms=250)
    loads = [generate(emu, options=options)["load_duration"] for options in ({}, {}, {"num_ctx": 8192}, {})]
    assert loads[0] >= 250 * MS and loads[1] < 150 * MS
    assert loads[2] >= 250 * MS and loads[3] >= 250 * MS  # each change of num_ctx is a reload


def test_num_predict_and_max_tokens_cut_with_length(emulator_factory) -> None:
    emu = emulator_factory(tokens=10)
    reply = generate(emu, options={"num_predict": 3})
    assert reply["done_reason"] == "length" and reply["eval_count"] == 3
    oai = openai.OpenAI(base_url=f"{emu.url}/v1", api_key="x")
    completion = oai.chat.completions.create(model=A, messages=[{"role": "user", "content": "hi"}], max_tokens=4)
    assert completion.choices[0].finish_reason == "length" and completion.usage is not None
    assert completion.usage.completion_tokens == 4


def test_injected_stall_is_a_gap_after_token_k(emulator_factory) -> None:
    emu = emulator_factory(tokens=6, token_ms=1, prefill_ms=1, stall_after=3, stall_ms=500)
    arrivals: list[float] = []
    final: dict[str, Any] = {}
    for part in ollama.Client(host=emu.url).generate(model=A, prompt="stall", stream=True):
        arrivals.append(time.monotonic())
        if part.done:
            final = part.model_dump()
    gaps = [b - a for a, b in itertools.pairwise(arrivals)]
    assert gaps.index(max(gaps)) == 2 and gaps[2] >= 0.5  # between token 3 and token 4
    assert final["eval_duration"] >= 500 * MS
    override = generate(emu, options={"emulator_stall_after": 1, "emulator_stall_ms": 0})
    assert override["eval_duration"] < 500 * MS


def test_embed_loads_the_model_too(emulator_factory) -> None:
    emu = emulator_factory(load_ms=200)
    reply = ollama.Client(host=emu.url).embed(model=B, input=["a", "b"]).model_dump()
    assert reply["load_duration"] >= 200 * MS and reply["total_duration"] >= reply["load_duration"]
    assert B in ps(emu)


def test_per_request_load_ms_override(emulator_factory) -> None:
    emu = emulator_factory()
    assert generate(emu, options={"emulator_load_ms": 200})["load_duration"] >= 200 * MS


def test_go_durations_and_cli_values() -> None:
    assert go_duration_s("5m") == 300 and go_duration_s("1h30m") == 5400 and go_duration_s("-1s") == -1
    assert go_duration_s("0") == 0 and go_duration_s("1.5s") == 1.5 and go_duration_s("250ms") == 0.25
    for bad in ("300", "", "5x", "m"):
        with pytest.raises(ValueError):
            go_duration_s(bad)
    assert parse_keep_alive("-1") == -1 and parse_keep_alive("10m") == 600
    assert parse_size("4.5GiB") == int(4.5 * GIB) and parse_size("800MiB") == 800 * 1024**2 and parse_size("7") == 7
    assert parse_profile("llama3.2:1b@load_ms=2000,size=5GiB,oom=1") == (
        "llama3.2:1b",
        ModelProfile(load_ms=2000, size=5 * GIB, oom=True),
    )
    for bad in ("x", "x@color=red", "x@size=3parsecs"):
        with pytest.raises(ValueError):
            parse_profile(bad)
