"""Every way records are read leaves ``source: replay`` out unless asked — one rule (``counts_as_traffic``) — and a
capture's records can be replayed like a log's."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import time
from pathlib import Path

from analyzer.protocol.record import InteractionRecord
from analyzer.report.load import load_requests
from analyzer.sources import read_sources
from analyzer.store.digest import summarize_log
from analyzer.store.log import InteractionLog, read_log
from analyzer.store.select import select
from analyzer.store.tail import LogFollower, newest_records
from tests.support.processes import emulator

CLI = str(Path(sys.executable).parent / "ollama-wire")
CAPTURES = Path(__file__).resolve().parents[2] / "data" / "captures"


def mixed_log(path: Path) -> list[InteractionRecord]:
    now = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime())
    records = [
        InteractionRecord(id=f"{source}-{n}", source=source, started_at=f"{now}.{n:06d}Z", model="m:1", kind="chat",
                          status=200, ttft_ms=10.0, total_ms=20.0, replay_of="proxy-0" if source == "replay" else None)
        for n, source in enumerate(["proxy", "pcap", "replay", "replay"])
    ]  # fmt: skip
    InteractionLog(path).append_many(records)
    return records


def test_every_reader_leaves_replays_out_unless_asked(tmp_path: Path) -> None:
    records = mixed_log(tmp_path)
    real = {"proxy-0", "pcap-1"}
    every = {r.id for r in records}
    assert {r.id for r in select(records)} == real
    assert {r.id for r in select(records, include_replays=True)} == every
    assert {r.id for r in read_sources([tmp_path])} == real
    assert {r.id for r in read_sources([tmp_path], include_replays=True)} == every
    assert {r.id for r in load_requests([tmp_path])[0]} == real
    assert {r.id for r in load_requests([tmp_path], include_replays=True)[0]} == every
    assert {r.id for r in newest_records(tmp_path, count=10)} == real
    assert {r.id for r in newest_records(tmp_path, count=10, include_replays=True)} == every
    assert sum(row["count"] for row in summarize_log(tmp_path)) == 2
    assert sum(row["count"] for row in summarize_log(tmp_path, include_replays=True)) == 4
    assert {r.id for r in LogFollower(tmp_path).poll()} == real
    assert {r.id for r in LogFollower(tmp_path, include_replays=True).poll()} == every
    found = json.loads(subprocess.run([CLI, "findings", str(tmp_path), "--json"], capture_output=True, text=True,
                                      check=True).stdout)  # fmt: skip
    assert found["headline"]["requests"] == 2
    top = subprocess.run(
        [CLI, "top", "--once", "--live", "off", "--log-dir", str(tmp_path), "--ollama", "http://127.0.0.1:9"],
        capture_output=True, text=True, check=True, timeout=60,
    )  # fmt: skip
    with_replays = subprocess.run(
        [CLI, "top", "--once", "--live", "off", "--log-dir", str(tmp_path), "--ollama", "http://127.0.0.1:9",
         "--include-replays"],
        capture_output=True, text=True, check=True, timeout=60,
    )  # fmt: skip
    assert top.stdout.count("m:1") < with_replays.stdout.count("m:1")


def test_a_capture_replays_with_the_bodies_it_captured(tmp_path: Path) -> None:
    """The pcap engine keeps request bodies too: a capture's inference requests reach the target byte-identical."""
    capture = CAPTURES / "lo4.pcap"
    port = json.loads((CAPTURES / "manifest.json").read_text())["captures"]["lo4"]["port"]
    expected = [json.loads(line) for line in (CAPTURES / "lo4.records.jsonl").read_text().splitlines() if line.strip()]
    sendable = [r for r in expected if r["kind"] in ("generate", "chat", "embed", "embeddings") and r["request_body"]]
    assert sendable
    bodies = tmp_path / "bodies"
    with emulator(body_log=str(bodies)) as running:
        done = subprocess.run(
            [CLI, "replay", str(capture), "--port", str(port), "--target", running.url, "--log-dir",
             str(tmp_path / "out"), "--speed", "max", "--concurrency", "4"],
            capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
    assert done.returncode in (0, 1), done.stderr  # a capture's error requests may fail again: that is fine
    received = {json.loads(line)["sha256"] for line in bodies.read_text().splitlines()}
    for record in sendable:
        assert hashlib.sha256(record["request_body"].encode()).hexdigest() in received, record["path"]
    assert {r.replay_of for r in read_log(tmp_path / "out")} >= {r["id"] for r in sendable}
