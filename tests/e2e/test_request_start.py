"""The proxy's started_at comes from the kernel: the receive stamp of a connection's first segment (peeked before
mitmproxy reads it) or TCP_INFO's last-data-received, with the bound in ``start_bound_ms``; never later than
mitmproxy's own parse time, never earlier than the client sent (less the bound).
A second script in the same real mitmdump reports mitmproxy's own timestamps for comparison."""

from __future__ import annotations

import json
import threading
import time
from datetime import datetime
from pathlib import Path

import httpx

from analyzer.emulator import EmulatorThread
from analyzer.recorder import kernel_stamps
from analyzer.recorder.process import MitmdumpProcess
from analyzer.store.log import read_log

SPY = """
import json

def response(flow):
    with open({out!r}, "a") as fh:
        fh.write(json.dumps({{"id": flow.id, "parsed": flow.request.timestamp_start,
                             "read": flow.metadata.get("ollama_wire_first_bytes_at"),
                             "prompt": json.loads(flow.request.content)["prompt"]}}) + "\\n")
"""
BOUNDS = {kernel_stamps.STAMP_BOUND_MS, kernel_stamps.TCP_INFO_BOUND_MS}


class SpiedMitmdump(MitmdumpProcess):
    def __init__(self, upstream: str, log_dir: Path, spy: Path) -> None:
        super().__init__(upstream, options={"ollama_log_dir": str(log_dir), "ollama_resources": "off"})
        self.spy = spy

    def command(self) -> list[str]:
        return [*super().command(), "-s", str(self.spy)]


def seconds(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def _check(records, times: dict, sent: dict[str, float]) -> None:
    for record in records:
        mitm = times[record.id]
        started = seconds(record.started_at)
        assert record.start_bound_ms in BOUNDS, record.start_bound_ms
        assert started <= mitm["parsed"] + 1e-6  # never later than mitmproxy's own stamp
        # the first byte left the client after it noted `sent`: the start cannot be earlier, less the bound
        assert started >= sent[mitm["prompt"]] - record.start_bound_ms / 1000 - 1e-6, (mitm, record.started_at)


def test_new_and_kept_alive_connections_get_kernel_starts(tmp_path: Path, emulator: EmulatorThread) -> None:
    spy, seen = tmp_path / "spy.py", tmp_path / "seen.jsonl"
    spy.write_text(SPY.format(out=str(seen)))
    sent: dict[str, float] = {}
    with SpiedMitmdump(emulator.url, tmp_path / "log", spy) as proxy:
        for n in range(2):
            with httpx.Client(timeout=30) as client:  # a new connection, two requests on it
                for m in range(2):
                    prompt = f"start {n}.{m}"
                    sent[prompt] = time.time()
                    body = {"model": "llama3.2:1b", "prompt": prompt, "stream": False}
                    assert client.post(proxy.url + "/api/generate", json=body).status_code == 200
    times = {row["id"]: row for row in map(json.loads, seen.read_text().splitlines())}
    records = read_log(tmp_path / "log")
    assert len(records) == 4 and set(times) == {r.id for r in records}
    _check(records, times, sent)


def test_a_burst_of_new_connections_is_stamped_by_the_kernel(tmp_path: Path, emulator: EmulatorThread) -> None:
    spy, seen = tmp_path / "spy.py", tmp_path / "seen.jsonl"
    spy.write_text(SPY.format(out=str(seen)))
    sent: dict[str, float] = {}
    with SpiedMitmdump(emulator.url, tmp_path / "log", spy) as proxy:
        barrier = threading.Barrier(16)

        def one(i: int) -> None:
            with httpx.Client(timeout=30) as client:
                prompt = f"burst {i}"
                body = {"model": "llama3.2:1b", "prompt": prompt, "stream": False}
                barrier.wait(30)
                sent[prompt] = time.time()
                assert client.post(proxy.url + "/api/generate", json=body).status_code == 200

        threads = [threading.Thread(target=one, args=(i,)) for i in range(16)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
    times = {row["id"]: row for row in map(json.loads, seen.read_text().splitlines())}
    records = read_log(tmp_path / "log")
    assert len(records) == 16
    _check(records, times, sent)
    # mitmproxy reads some of them late; the kernel stamp is earlier than that read for those
    assert any(seconds(r.started_at) < times[r.id]["read"] - 0.001 for r in records)
