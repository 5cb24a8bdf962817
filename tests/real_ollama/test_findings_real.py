"""Every finding caused for real (issues 15 item 2 and 17): official clients → a real mitmdump with the addon → a real
``ollama serve`` v0.24.0 with SmolLM2 → ``ollama-wire report --json`` → exactly the expected codes and record ids.

Each test has its own server settings and its own proxy log, so the report covers that scenario only. Models are
preloaded directly on the server (not through the proxy) where a scenario is not about loads, exactly as a user
preloads before traffic arrives. The expected ids come from what the clients saw and from the server's own
answers, never from the rules under test.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import ollama
import pytest
from click.testing import CliRunner

from analyzer.cli.main import cli
from analyzer.protocol.durations import hidden_wait_ms
from analyzer.protocol.record import InteractionRecord
from tests.real_ollama.conftest import SHORT, ollama_client
from tests.support.processes import Mitmdump
from tests.support.real_ollama import RealOllama

pytestmark = pytest.mark.timeout(600)

# Answers that end by themselves (done_reason stop): the first sentence, bounded; only the length test cuts one.
NATURAL = {"temperature": 0, "seed": 7, "num_predict": 96, "stop": [".", "\n", "!", "?", ","]}


def report(proxy: Mitmdump) -> dict[str, list[str]]:
    """``ollama-wire report LOG --json``: finding code → evidence ids."""
    result = CliRunner().invoke(cli, ["report", str(proxy.log_dir), "--json"])
    assert result.exit_code == 0, result.output
    return {f["code"]: f["ids"] for f in json.loads(result.stdout)["findings"]}


def mark() -> str:
    return "m" + uuid.uuid4().hex[:8]


def settled(proxy: Mitmdump, count: int) -> list[InteractionRecord]:
    """Wait (bounded) for ``count`` records in the proxy's log; oldest first."""
    deadline = time.monotonic() + 60
    records: list[InteractionRecord] = []
    while time.monotonic() < deadline:
        records = proxy.records()
        if len(records) >= count:
            break
        time.sleep(0.05)
    assert len(records) == count, [r.prompt for r in records]
    return sorted(records, key=lambda r: r.started_at)


def preload(server: RealOllama, model: str | None = None, **options: Any) -> None:
    """Load the model on the server directly (not recorded): what a user does before traffic arrives."""
    ollama_client(server.url).generate(model=model or server.model, prompt="", options=options or None)


def generate(url: str, model: str, prompt: str, **options: Any) -> str:
    """A streamed generate; errors are what some scenarios are about: returned as text."""
    keep_alive = options.pop("keep_alive", None)
    try:
        parts = ollama_client(url).generate(
            model=model, prompt=prompt, stream=True, options={**NATURAL, **options}, keep_alive=keep_alive
        )
        return "".join(p.response or "" for p in parts)
    except ollama.ResponseError as exc:
        return f"error {exc.status_code}: {exc.error}"


def concurrently(*calls: Callable[[], object], spacing_s: float = 0.05) -> None:
    threads = [threading.Thread(target=call) for call in calls]
    for thread in threads:
        thread.start()
        time.sleep(spacing_s)
    for thread in threads:
        thread.join(timeout=300)
    assert not any(t.is_alive() for t in threads)


def served_after_first(records: list[InteractionRecord]) -> list[str]:
    """Ids of the requests that began generating after the first one did (ordered by start): they waited."""
    first = min(records, key=lambda r: _epoch(r) + (r.ttft_ms or 0) / 1000)
    return [r.id for r in sorted(records, key=lambda r: r.started_at) if r is not first]


def _epoch(record: InteractionRecord) -> float:
    from analyzer.report.derive import epoch_seconds

    value = epoch_seconds(record.started_at)
    assert value is not None
    return value


def describe(records: list[InteractionRecord]) -> list[tuple[object, ...]]:
    """What a failing assertion shows: per record its prompt's tag, start, TTFT, load, hidden wait, total."""
    t0 = min(_epoch(r) for r in records)
    return [
        ((r.prompt or "")[:24], round(_epoch(r) - t0, 2), r.ttft_ms, r.load_duration_ms, hidden_wait_ms(r),
         r.total_duration_ms, r.done_reason, r.status)
        for r in sorted(records, key=lambda r: r.started_at)
    ]  # fmt: skip


def test_clean_run_has_no_findings(real_ollama_server, real_proxy):
    server = real_ollama_server(num_parallel=1)
    preload(server)
    proxy = real_proxy(server)
    m = mark()
    for i in range(3):
        generate(proxy.url, server.model, f"{m} say a colour {i}")
    ollama_client(proxy.url).chat(
        model=server.model, messages=[{"role": "user", "content": f"{m} hi"}], options=NATURAL
    )
    records = settled(proxy, 4)
    assert all(r.status == 200 and r.complete for r in records)
    assert report(proxy) == {}, [(r.kind, r.load_duration_ms, r.total_duration_ms) for r in records]


def test_cold_load_first_use_and_keep_alive_zero(real_ollama_server, real_proxy):
    server = real_ollama_server(num_parallel=1)
    proxy = real_proxy(server)
    m = mark()
    generate(proxy.url, server.model, f"{m} first use loads the model")
    generate(proxy.url, server.model, f"{m} warm, then unload", keep_alive=0)
    deadline = time.monotonic() + 30  # keep_alive 0: the runner goes away after the answer
    while server.runner_pids() and time.monotonic() < deadline:
        time.sleep(0.1)
    generate(proxy.url, server.model, f"{m} loads it again")
    generate(proxy.url, server.model, f"{m} warm again")
    records = settled(proxy, 4)
    assert report(proxy) == {"cold_load": [records[0].id, records[2].id]}


def test_model_thrash_two_models_alternating(real_ollama_server, real_proxy):
    server = real_ollama_server(num_parallel=1, max_loaded_models=1)
    proxy = real_proxy(server)
    m = mark()
    order = [server.model, server.model, server.twin_model, server.twin_model] * 2
    for i, model in enumerate(order):
        generate(proxy.url, model, f"{m} turn {i}: name a colour")
    records = settled(proxy, len(order))
    assert [r.model for r in records] == order
    loads = [records[i].id for i in (0, 2, 4, 6)]  # every first request after a switch loads its model
    # first loads (0, 2) are not thrash; 4 and 6 reload a model another model's load evicted
    assert report(proxy) == {"cold_load": loads, "model_thrash": [records[4].id, records[6].id]}


def test_queueing_one_slot_several_streams(real_ollama_server, real_proxy):
    server = real_ollama_server(num_parallel=1)
    preload(server)
    proxy = real_proxy(server)
    m = mark()
    concurrently(
        *[lambda i=i: generate(proxy.url, server.model, f"{m} stream {i}: describe the sea") for i in range(3)]
    )
    records = settled(proxy, 3)
    waited = served_after_first(records)
    # the wait is in total_duration only (hidden), far more than in load_duration
    hidden = {r.id: (hidden_wait_ms(r) or 0, r.load_duration_ms or 0) for r in records}
    assert all(hidden[i][0] > 2 * hidden[i][1] for i in waited), describe(records)
    assert report(proxy) == {"queueing": waited}, describe(records)


def test_parallelism_collapsed_when_forced_to_one_slot(real_ollama_server, real_proxy):
    parallel = real_ollama_server(num_parallel=2)
    preload(parallel)
    proxy = real_proxy(parallel)
    m = mark()
    concurrently(
        *[lambda i=i: generate(proxy.url, parallel.model, f"{m} together {i}: describe the sea") for i in range(2)]
    )
    together = settled(proxy, 2)
    port = parallel.port
    parallel.stop()
    # the same server, now with one slot (what Ollama does under memory pressure), behind the same proxy
    single = real_ollama_server(num_parallel=1, port=port)
    preload(single)
    concurrently(
        *[lambda i=i: generate(proxy.url, single.model, f"{m} serial {i}: describe the sea") for i in range(4)]
    )
    records = settled(proxy, 6)
    serial = [r for r in records if "serial" in (r.prompt or "")]
    waited = served_after_first(serial)
    assert {r.id for r in together} | {r.id for r in serial} == {r.id for r in records}
    assert report(proxy) == {"parallelism_collapsed": waited, "queueing": waited}, describe(records)


def test_context_truncated_generate_and_chat(real_ollama_server, real_proxy):
    server = real_ollama_server(num_parallel=1, keep_alive="1h")  # slow on a busy machine: never expire meanwhile
    m = mark()
    turns: list[list[dict[str, str]]] = []
    messages = [{"role": "system", "content": "be brief"}]
    for turn in range(5):
        messages.append({"role": "user", "content": f"{m} turn {turn}: " + "tell me about the sea and its waves " * 8})
        turns.append(list(messages))
        messages.append({"role": "assistant", "content": "the sea is large and blue " * 8})
    # what each turn's whole prompt counts, with room for it (directly on the server: not recorded)
    direct = ollama_client(server.url)
    full = [
        direct.chat(
            model=server.model, messages=t, options={**SHORT, "num_predict": 1, "num_ctx": 1024}
        ).prompt_eval_count
        for t in turns
    ]
    preload(server, num_ctx=256)
    proxy = real_proxy(server)
    client = ollama_client(proxy.url)
    counts = [
        client.chat(
            model=server.model, messages=t, options={**SHORT, "num_predict": 1, "num_ctx": 256}
        ).prompt_eval_count
        for t in turns
    ]
    for words in (300, 380, 460, 560):  # each over 256 tokens
        generate(proxy.url, server.model, f"{m} long " + "word " * words, num_ctx=256, num_predict=1)
    records = settled(proxy, len(turns) + 4)
    chats, gens = records[: len(turns)], records[len(turns) :]
    cut_chats = [r.id for r, f, c in zip(chats, full, counts, strict=True) if (f or 0) > 256 and (c or 0) < (f or 0)]
    assert len(cut_chats) >= 2, (full, counts)
    assert [r.prompt_eval_count for r in gens] == [256] * 4
    found = report(proxy)
    # one token each, for speed: the server says which stopped at num_predict
    assert found.pop("length_cutoff", []) == [r.id for r in records if r.done_reason == "length"]
    assert found == {"context_truncated": cut_chats + [r.id for r in gens]}, describe(records)


def test_length_stall_not_found_aborted_context_exceeded(real_ollama_server, real_proxy):
    server = real_ollama_server(num_parallel=1)
    preload(server)
    proxy = real_proxy(server)
    m = mark()
    client = ollama_client(proxy.url)
    generate(proxy.url, server.model, f"{m} natural", num_predict=3, stop=[])  # cut by num_predict: "length"
    # a stall: the runner stopped for 2 s mid-stream
    (runner,) = server.runner_pids()
    parts = client.generate(model=server.model, prompt=f"{m} stalls", stream=True, options={**SHORT, "num_predict": 24})
    for seen, _ in enumerate(parts, 1):
        if seen == 6:
            os.kill(runner, signal.SIGSTOP)
            time.sleep(2.0)
            os.kill(runner, signal.SIGCONT)
    missing = generate(proxy.url, "nope-" + m + ":1b", f"{m} missing model")
    assert missing.startswith("error 404"), missing
    aborted = client.generate(
        model=server.model, prompt=f"{m} hang up", stream=True, options={**SHORT, "num_predict": 40}
    )
    next(iter(aborted))
    aborted.close()
    with pytest.raises(ollama.ResponseError) as too_long:
        client.embed(model=server.model, input=f"{m} " + "word " * 400, truncate=False, options={"num_ctx": 128})
    assert too_long.value.status_code == 400
    got = settled(proxy, 5)
    records = {"embed" if r.kind == "embed" else (r.prompt or "").split(" ", 2)[1]: r for r in got}
    assert set(records) == {"natural", "stalls", "missing", "hang", "embed"}, [
        (r.kind, r.prompt, r.status) for r in got
    ]
    by = {k: v.id for k, v in records.items()}
    assert records["natural"].done_reason == "length" and records["stalls"].done_reason == "length"
    assert report(proxy) == {
        "length_cutoff": [by["natural"], by["stalls"]],
        "stall": [by["stalls"]],
        "model_not_found": [by["missing"]],
        "context_exceeded": [by["embed"]],
        "client_aborted": [by["hang"]],
    }, describe(got)


def test_server_busy_while_a_model_loads(real_ollama_server, real_proxy):
    server = real_ollama_server(num_parallel=1, max_queue=1)
    proxy = real_proxy(server)
    m = mark()
    answers: dict[int, str] = {}

    def send(i: int) -> None:
        answers[i] = generate(proxy.url, server.model, f"{m} burst {i}: describe the sea")

    concurrently(*[lambda i=i: send(i) for i in range(5)], spacing_s=0.02)  # all while the first loads the model
    settled(proxy, 5)
    generate(proxy.url, server.model, f"{m} warm afterwards: describe the sea")  # the model's warm load_duration
    records = settled(proxy, 6)[:5]
    busy = [r.id for r in records if r.status == 503]
    assert busy and all(a.startswith("error 503") for a in answers.values() if "error" in a)
    assert sum(a.startswith("error 503") for a in answers.values()) == len(busy)
    loaded = [r for r in records if r.status == 200]
    found = report(proxy)
    assert found.pop("server_busy") == busy, describe(settled(proxy, 6))
    # the first request loaded the model; the one the queue held waited for that load, then for the slot
    assert found.pop("cold_load", None) == [r.id for r in loaded], describe(settled(proxy, 6))
    assert found == ({"queueing": served_after_first(loaded)} if len(loaded) > 1 else {}), describe(records)
