"""Constructed interaction records for the report's tests: a clean baseline and one trouble per finding."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from analyzer.protocol.record import InteractionRecord

T0 = datetime(2026, 11, 28, 21, 0, 0, tzinfo=UTC)


def at(seconds: float) -> str:
    """``started_at`` for T0 + ``seconds``."""
    return (T0 + timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def rec(rid: str, second: float, model: str = "llama3.2", **overrides: Any) -> InteractionRecord:
    """A healthy streamed native generate: 30 ms load, 40 ms prompt eval, 50 tokens in 500 ms, 10 ms overhead."""
    fields: dict[str, Any] = {
        "id": rid,
        "source": "proxy",
        "started_at": at(second),
        "client": "127.0.0.1:50000",
        "server": "127.0.0.1:11434",
        "method": "POST",
        "path": "/api/generate",
        "status": 200,
        "api": "ollama",
        "kind": "generate",
        "model": model,
        "stream": True,
        "prompt": f"Question {rid}: why is the sky blue?",
        "response_text": "Because of Rayleigh scattering.",
        "done_reason": "stop",
        "complete": True,
        "ttfb_ms": 75.0,
        "ttft_ms": 80.0,
        "total_ms": 590.0,
        "gen_ms": 500.0,
        "chunks": 51,
        "wire_tokens_per_s": 98.0,
        "gap_p50_ms": 10.0,
        "gap_p95_ms": 12.0,
        "gap_max_ms": 15.0,
        "prompt_eval_count": 20,
        "eval_count": 50,
        "total_duration_ms": 580.0,
        "load_duration_ms": 30.0,
        "prompt_eval_duration_ms": 40.0,
        "eval_duration_ms": 505.0,
        "eval_tokens_per_s": 99.0,
        "prompt_tokens_per_s": 500.0,
        "request_bytes": 120,
        "response_bytes": 6000,
    }
    fields.update(overrides)
    return InteractionRecord(**fields)


def clean_night() -> list[InteractionRecord]:
    """Forty healthy sequential requests over two models, a few seconds apart, models staying loaded."""
    records = [rec(f"ok{i}", i * 5.0, model="llama3.2" if i % 4 else "qwen2.5") for i in range(40)]
    # The first use of each model loads it once; that alone is cold_load, so keep it under the threshold here.
    return records
