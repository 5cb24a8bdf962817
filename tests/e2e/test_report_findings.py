"""End to end: official clients → real mitmdump + addon → the emulator playing Ollama's scheduler → the addon's
log → ``ollama-wire report --json`` → exactly the expected finding codes, with the right record ids.

One emulator and one proxy serve the whole module; each scenario uses models of its own and reads the report
for those models only (``--model``), so scenarios cannot see each other's traffic. Every wait is bounded.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import ollama
import openai
import pytest
from click.testing import CliRunner

from analyzer.cli.main import cli
from analyzer.emulator import EmulatorConfig, EmulatorThread
from analyzer.protocol.record import InteractionRecord
from analyzer.recorder.process import MitmdumpProcess
from analyzer.report.findings import COLD_LOAD_MS, STALL_MIN_GAP_MS
from analyzer.store.log import read_log

LOAD_MS = COLD_LOAD_MS + 100  # a load the cold_load rule must see
SCENARIO_PROFILES: dict[str, dict[str, Any]] = {
    "thrash-a": {"load_ms": LOAD_MS},
    "thrash-b": {"load_ms": LOAD_MS},
    "huge": {"oom": True},
    **{name: {} for name in ("clean", "busy", "ctx", "len", "stall", "slow", "errs")},
}


class Setup:
    """The emulator, the proxy in front of it, and what a scenario needs to send and read back."""

    def __init__(self, emulator: EmulatorThread, proxy: MitmdumpProcess, log_dir: Path) -> None:
        self.emulator, self.proxy, self.log_dir = emulator, proxy, log_dir
        self.client = ollama.Client(host=proxy.url, timeout=30)
        self.openai = openai.OpenAI(base_url=proxy.url + "/v1", api_key="ollama", timeout=30, max_retries=0)

    def generate(self, model: str, prompt: str, **options: Any) -> str:
        """A streamed native generate; returns the text (errors are the scenario's point: swallowed)."""
        keep_alive = options.pop("keep_alive", None)
        try:
            parts = self.client.generate(model=model, prompt=prompt, stream=True, options=options or None,
                                         keep_alive=keep_alive)  # fmt: skip
            return "".join(part.response or "" for part in parts)
        except Exception as exc:  # ollama.ResponseError, httpx errors: the record is what the scenario is about
            return f"error: {exc}"

    def records(self, count: int, marker: str, timeout_s: float = 20.0) -> list[InteractionRecord]:
        """Wait (bounded) for ``count`` records whose prompt holds ``marker``; oldest first."""
        deadline = time.monotonic() + timeout_s
        found: list[InteractionRecord] = []
        while time.monotonic() < deadline:
            found = [r for r in read_log(self.log_dir) if marker in (r.prompt or "")]
            if len(found) >= count:
                return sorted(found, key=lambda r: r.started_at)
            time.sleep(0.05)
        raise AssertionError(f"{len(found)} of {count} records with {marker!r} after {timeout_s}s")

    def report(self, *models: str) -> dict[str, list[str]]:
        """``ollama-wire report LOG --json --model …``: finding code → ids."""
        args = ["report", str(self.log_dir), "--json", *[a for m in models for a in ("--model", m)]]
        result = CliRunner().invoke(cli, args)
        assert result.exit_code == 0, result.output
        document = json.loads(result.stdout)
        return {f["code"]: f["ids"] for f in document["findings"]}


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    config = EmulatorConfig(
        prefill_ms=2.0,
        token_ms=1.0,
        num_parallel=1,
        max_loaded_models=1,
        profiles=SCENARIO_PROFILES,
    )
    base = tmp_path_factory.mktemp("report-e2e")
    log_dir = base / "log"
    with (
        EmulatorThread(config) as emulator,
        MitmdumpProcess(emulator.url, options={"ollama_log_dir": str(log_dir)}, console_path=base / "console.txt")
        as proxy,
    ):  # fmt: skip
        yield Setup(emulator, proxy, log_dir)


def mark() -> str:
    return uuid.uuid4().hex[:8]


def test_clean_scenario_has_no_findings(setup: Setup) -> None:
    m = mark()
    setup.generate("clean", f"{m} why is the sky blue?")
    setup.client.chat(model="clean", messages=[{"role": "user", "content": f"{m} name three colours"}])
    chunks = setup.openai.chat.completions.create(
        model="clean", messages=[{"role": "user", "content": f"{m} say hello"}], stream=True
    )
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    setup.generate("clean", f"{m} and once more")
    setup.records(4, m)
    assert setup.report("clean") == {}


def test_cold_load_and_model_thrash(setup: Setup) -> None:
    m = mark()
    for i, model in enumerate(("thrash-a", "thrash-b", "thrash-a", "thrash-b")):
        setup.generate(model, f"{m} switch {i}")
    records = setup.records(4, m)
    assert [r.model for r in records] == ["thrash-a", "thrash-b", "thrash-a", "thrash-b"]
    assert all((r.load_duration_ms or 0) >= COLD_LOAD_MS for r in records), [r.load_duration_ms for r in records]
    found = setup.report("thrash-a", "thrash-b")
    ids = [r.id for r in records]
    assert found == {"cold_load": ids, "model_thrash": ids[2:]}  # the first use of each model is a load, not a reload


def test_queueing_behind_one_slot(setup: Setup) -> None:
    m = mark()
    setup.generate("busy", f"{m} warm up")  # load it first: the queued requests then wait for the slot only
    threads = [
        threading.Thread(
            target=setup.generate,
            args=("busy", f"{m} concurrent {i}"),
            kwargs={"emulator_tokens": 30, "emulator_token_ms": 25},
        )
        for i in range(3)
    ]
    for thread in threads:
        thread.start()
        time.sleep(0.05)  # arrive in order, all while the first is still generating
    for thread in threads:
        thread.join(timeout=30)
    records = [r for r in setup.records(4, m) if "concurrent" in (r.prompt or "")]
    served_first = min(records, key=lambda r: r.total_duration_ms or 0.0)
    found = setup.report("busy")
    assert found == {"queueing": sorted((r.id for r in records if r is not served_first), key=_order(records))}


def _order(records: list[InteractionRecord]) -> Callable[[str], str]:
    started = {r.id: r.started_at for r in records}
    return lambda rid: started[rid]


def test_context_truncated(setup: Setup) -> None:
    m = mark()
    setup.generate("ctx", f"{m} a short prompt that fits the context window easily", num_ctx=64)
    for words in (200, 300, 400, 520):
        setup.generate("ctx", f"{m} long " + "word " * words, num_ctx=64)
    records = setup.records(5, m)
    assert [r.prompt_eval_count for r in records[1:]] == [64] * 4
    assert setup.report("ctx") == {"context_truncated": [r.id for r in records[1:]]}


def test_length_cutoff(setup: Setup) -> None:
    m = mark()
    setup.generate("len", f"{m} natural end")
    setup.generate("len", f"{m} cut by num_predict", num_predict=5)
    reply = setup.openai.chat.completions.create(
        model="len", messages=[{"role": "user", "content": f"{m} cut by max_tokens"}], max_tokens=3
    )
    assert reply.choices[0].finish_reason == "length"
    records = setup.records(3, m)
    assert setup.report("len") == {"length_cutoff": [r.id for r in records[1:]]}


def test_stall(setup: Setup) -> None:
    m = mark()
    setup.generate("stall", f"{m} steady")
    setup.generate("stall", f"{m} stalls", emulator_stall_after=5, emulator_stall_ms=STALL_MIN_GAP_MS + 200)
    records = setup.records(2, m)
    assert setup.report("stall") == {"stall": [records[1].id]}


def test_slow_generation(setup: Setup) -> None:
    m = mark()
    # ms per token: a slow period in the middle, ten times slower, so that scheduling jitter on a loaded machine
    # (the emulator measures its durations like Ollama does) cannot make a fast request look slow
    plan = [3.0] * 4 + [30.0] * 3 + [3.0] * 2
    for i, token_ms in enumerate(plan):
        setup.generate("slow", f"{m} request {i}", emulator_token_ms=token_ms, emulator_tokens=30)
    records = setup.records(len(plan), m)
    assert setup.report("slow") == {"slow_generation": [r.id for r in records[4:7]]}


def test_one_finding_per_error_category(setup: Setup) -> None:
    m = mark()
    setup.generate("nope", f"{m} missing model")
    setup.generate("huge", f"{m} does not fit")
    setup.generate("errs", f"{m} server error", emulator_fail_status=500)
    setup.generate("errs", f"{m} error mid stream", emulator_error_after=3)
    setup.generate("errs", f"{m} upstream hangs up", emulator_close_after=3)
    parts = setup.client.generate(
        model="errs",
        prompt=f"{m} client hangs up",
        stream=True,
        options={"emulator_token_ms": 50, "emulator_tokens": 60},
    )
    next(iter(parts))
    parts.close()  # the client stops reading and closes the connection mid-stream
    records = {r.prompt.split(" ", 1)[1]: r.id for r in setup.records(6, m) if r.prompt}
    assert setup.report("nope", "huge", "errs") == {
        "out_of_memory": [records["does not fit"]],
        "server_error": [records["server error"]],
        "error_mid_stream": [records["error mid stream"]],
        "upstream_failed": [records["upstream hangs up"]],
        "model_not_found": [records["missing model"]],
        "client_aborted": [records["client hangs up"]],
    }
