"""Replay and compare against a real Ollama: traffic recorded through the proxy in front of one server setting,
replayed by `ollama-wire replay` against a server with another, compared with `ollama-wire compare --json`.

- OLLAMA_NUM_PARALLEL 1 → 2: the replay reproduces the burst's concurrency, and the second server really runs two
  requests at once where the first ran one at a time. (On this machine's runner — one CPU thread per model — two
  slots share that thread, so each request runs about half as fast and the waits do not shrink: compare reports
  what happened, whatever it is; the emulator tests check the verdict when queueing does go away.)
- OLLAMA_KEEP_ALIVE 0 → default: every request loaded the model; against a warm server none does.
- Requests with a seed and temperature 0 give the same text on both sides (the same model and settings).
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import uuid
from pathlib import Path

import pytest

from analyzer.protocol.record import InteractionRecord
from analyzer.report.derive import epoch_seconds
from analyzer.store.log import read_log
from tests.real_ollama.conftest import SHORT, ollama_client

pytestmark = pytest.mark.timeout(900)
CLI = str(Path(sys.executable).parent / "ollama-wire")


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([CLI, *args], capture_output=True, text=True, timeout=600, check=False)


def streamed(client: object, model: str, prompt: str) -> None:
    for _ in client.generate(model=model, prompt=prompt, options=SHORT, stream=True):  # type: ignore[attr-defined]
        pass


def starts(records: list[InteractionRecord]) -> list[float]:
    return [epoch_seconds(r.started_at) or 0.0 for r in records]


def most_generating_at_once(records: list[InteractionRecord]) -> int:
    """The most requests streaming tokens at the same moment (from their first token to their last byte)."""
    spans = []
    for record, start in zip(records, starts(records), strict=True):
        assert record.ttft_ms is not None and record.total_ms is not None
        spans.append((start + record.ttft_ms / 1000, start + record.total_ms / 1000))
    return max(sum(1 for s, e in spans if s <= at < e) for at, _ in spans)


def replay_and_compare(log_dir: Path, target_url: str, out: Path, label: str) -> dict[str, object]:
    done = cli("replay", str(log_dir), "--target", target_url, "--label", label, "--log-dir", str(out))
    assert done.returncode == 0, done.stderr
    compared = cli("compare", str(log_dir), f"label:{label}", "--log-dir", str(out), "--json")
    assert compared.returncode == 0, compared.stderr
    result: dict[str, object] = json.loads(compared.stdout)
    return result


def test_num_parallel_1_to_2_removes_the_queueing(real_ollama_server, real_proxy, tmp_path: Path) -> None:
    one = real_ollama_server(num_parallel=1)
    two = real_ollama_server(num_parallel=2)
    proxy = real_proxy(one)
    tag = uuid.uuid4().hex[:8]
    client = ollama_client(proxy.url)
    client.generate(model=one.model, prompt="", keep_alive="10m")  # loaded: the burst measures slots, not loading
    ollama_client(two.url).generate(model=two.model, prompt="", keep_alive="10m")
    threads = [threading.Thread(target=streamed, args=(client, one.model, f"Count to {n} ({tag})")) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    proxy.wait_for(tag, count=4)
    result = replay_and_compare(proxy.log_dir, two.url, tmp_path / "replay", "parallel2")
    (model,) = result["per_model"]  # type: ignore[misc]
    before, after = model["baseline"], model["candidate"]
    assert result["pairs"] == 5 and before["errors"] == after["errors"] == 0  # the burst and the preload
    assert str(result["verdict"]).startswith(f"{proxy.log_dir.name} → parallel2: ")
    burst = [r for r in read_log(proxy.log_dir) if tag in (r.prompt or "")]
    replayed = [r for r in read_log(tmp_path / "replay") if tag in (r.prompt or "")]
    assert len(burst) == len(replayed) == 4
    assert most_generating_at_once(burst) == 1  # one slot: one request generating at a time
    assert most_generating_at_once(replayed) == 2  # two slots, and the replay sent the burst as a burst
    assert max(starts(replayed)) - min(starts(replayed)) < 1.0


def test_keep_alive_0_to_default_removes_the_cold_loads(real_ollama_server, real_proxy, tmp_path: Path) -> None:
    cold = real_ollama_server(num_parallel=1, keep_alive="0")
    warm = real_ollama_server(num_parallel=1)
    proxy = real_proxy(cold)
    tag = uuid.uuid4().hex[:8]
    client = ollama_client(proxy.url)
    for n in range(3):
        client.generate(model=cold.model, prompt=f"Name a colour ({tag} {n})", options=SHORT)
    proxy.wait_for(tag, count=3)
    ollama_client(warm.url).generate(model=warm.model, prompt="", keep_alive="10m")  # the candidate runs warm
    result = replay_and_compare(proxy.log_dir, warm.url, tmp_path / "replay", "keepalive")
    (model,) = result["per_model"]  # type: ignore[misc]
    before, after = model["baseline"], model["candidate"]
    assert result["pairs"] == 3
    assert after["load_ms"] < before["load_ms"] / 3, model  # every baseline request loaded the model; none here
    assert after["cold_loads"] <= before["cold_loads"]
    # seed 7, temperature 0, the same model and settings: the same text, request by request
    outputs = result["outputs"]
    assert outputs["deterministic"] == 3 and outputs["identical"] == 3, outputs  # type: ignore[index]
