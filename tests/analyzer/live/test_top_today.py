"""``top`` with today's APIs: the Recent table shows how long a request thought, and per-model speed leaves out
the model-management requests (load/unload), which generate nothing."""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

from analyzer.live.top import rows
from analyzer.live.top.state import TopState
from analyzer.protocol.record import InteractionRecord


def record(key: str, kind: str, **extra: object) -> InteractionRecord:
    base = InteractionRecord(
        id=key,
        source="proxy",
        started_at=time.strftime("%Y-%m-%dT%H:%M:%S.000000Z", time.gmtime(time.time() - 5)),
        method="POST",
        path="/v1/messages",
        status=200,
        api="anthropic",
        kind=kind,
        model="qwen3:8b",
        ttft_ms=80.0,
        total_ms=2000.0,
        eval_count=20,
        complete=True,
    )
    return replace(base, **extra)  # type: ignore[arg-type]


def test_recent_row_shows_thinking_time() -> None:
    row = rows.recent_row(record("a", "messages", thinking_ms=1234.0))
    assert dict(zip(rows.RECENT_COLUMNS, map(str, row), strict=True))["Think"] == rows.ms(1234.0)
    assert dict(zip(rows.RECENT_COLUMNS, map(str, rows.recent_row(record("b", "messages"))), strict=True))[
        "Think"
    ] == rows.ms(None)


def test_per_model_leaves_out_load_and_unload(tmp_path: Path) -> None:
    state = TopState(str(tmp_path / "feed.sock"), str(tmp_path / "log"), "http://127.0.0.1:9")
    state.add_finished(record("gen", "messages", ttft_ms=300.0))
    state.add_finished(record("load", "load", path="/api/generate", api="ollama", ttft_ms=None, total_ms=4000.0))
    state.add_finished(record("unload", "unload", path="/api/generate", api="ollama", ttft_ms=None))
    stats = state.per_model(3600, time.time())
    assert [(s.model, s.requests, s.ttft_p50) for s in stats] == [("qwen3:8b", 1, 300.0)]
