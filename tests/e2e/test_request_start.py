"""The proxy's started_at: a connection's first request is stamped when its bytes were read, less at most
1 ms (never before the accept); later requests on it with the head-parse time.
A second script in the same real mitmdump reports mitmproxy's own timestamps for comparison."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import httpx

from analyzer.emulator import EmulatorThread
from analyzer.recorder.arrival import CREDIT_S
from analyzer.recorder.process import MitmdumpProcess
from analyzer.store.log import read_log

SPY = """
import json

def response(flow):
    with open({out!r}, "a") as fh:
        fh.write(json.dumps({{"id": flow.id, "parsed": flow.request.timestamp_start,
                             "accepted": flow.client_conn.timestamp_start,
                             "read": flow.metadata.get("ollama_wire_first_bytes_at")}}) + "\\n")
"""


class SpiedMitmdump(MitmdumpProcess):
    def __init__(self, upstream: str, log_dir: Path, spy: Path) -> None:
        super().__init__(upstream, options={"ollama_log_dir": str(log_dir)})
        self.spy = spy

    def command(self) -> list[str]:
        return [*super().command(), "-s", str(self.spy)]


def seconds(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def test_first_request_on_a_connection_starts_at_accept(tmp_path: Path, emulator: EmulatorThread) -> None:
    spy, seen = tmp_path / "spy.py", tmp_path / "seen.jsonl"
    spy.write_text(SPY.format(out=str(seen)))
    body = {"model": "llama3.2:1b", "prompt": "start", "stream": False}
    with SpiedMitmdump(emulator.url, tmp_path / "log", spy) as proxy:
        for _ in range(2):
            with httpx.Client(timeout=30) as client:  # a new connection, two requests on it
                assert client.post(proxy.url + "/api/generate", json=body).status_code == 200
                assert client.post(proxy.url + "/api/generate", json=body).status_code == 200
    times = {row["id"]: row for row in map(json.loads, seen.read_text().splitlines())}
    records = sorted(read_log(tmp_path / "log"), key=lambda r: r.started_at)
    assert len(records) == 4 and set(times) == {r.id for r in records}
    for index, record in enumerate(records):
        mitm = times[record.id]
        started = seconds(record.started_at)
        if index % 2 == 0:  # first on its connection: when its bytes were read, less 1 ms at most, not before accept
            expected = min(max(mitm["accepted"], mitm["read"] - CREDIT_S), mitm["parsed"])
            assert abs(started - expected) < 1e-6 and started < mitm["parsed"]
        else:  # kept alive: mitmproxy's parse time
            assert mitm["read"] is None and abs(started - mitm["parsed"]) < 1e-6
