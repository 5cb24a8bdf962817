"""The live feed drops (and counts) rather than blocks when its queue is full, and reports the drops."""

from __future__ import annotations

import time
import urllib.request

from test_export_mapping import chat

from analyzer.export.observer import ExportObserver
from analyzer.recorder.process import free_port


def test_a_full_queue_drops_and_counts_instead_of_blocking() -> None:
    port = free_port()
    live = ExportObserver(prometheus_address=f"127.0.0.1:{port}", queue_size=2)
    try:
        live._stop.set()  # freeze the worker: nothing leaves the queue
        live._worker.join(5)
        for n in range(50):
            live.interaction_finished(chat(id=f"r{n}"))  # must return at once even though nobody drains
        assert live._queue.qsize() == 2
        live._account()
        assert live.telemetry.drops.totals == {"records": 48}
        page = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
        assert 'ollama_export_dropped_total{signal="records"} 48.0' in page
        assert "could not export 48 records" in live.drop_summary()
    finally:
        live.close(2.0)


def test_records_reach_the_histograms_and_in_flight_follows_start_and_finish() -> None:
    port = free_port()
    live = ExportObserver(prometheus_address=f"127.0.0.1:{port}")
    try:

        class Started:
            record_id = "open-1"
            endpoint = type("E", (), {"kind": "chat"})()

        live.interaction_started(Started())  # type: ignore[arg-type]
        assert live.in_flight() == {"chat": 1}
        live.interaction_finished(chat(id="open-1"))
        assert live.in_flight() == {}
        deadline = time.monotonic() + 10
        while live.exported < 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        page = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
        assert 'gen_ai_client_operation_duration_seconds_count{gen_ai_operation_name="chat"' in page
    finally:
        live.close(2.0)
    assert live.telemetry.prometheus is None  # the /metrics server is closed
