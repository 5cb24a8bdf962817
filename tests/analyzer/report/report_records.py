"""Constructed interaction records for the report's tests: a clean baseline and one trouble per finding."""

from __future__ import annotations

from dataclasses import replace
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


def troubled_night(n: int = 300) -> list[InteractionRecord]:
    """A night with every kind of trouble: ``n`` healthy requests (two clients in parallel, three models), then
    cold loads and thrashing, a queue, truncated prompts, cut-off answers, a stall, a slow period, errors of every
    category, and records a capture cut."""
    models = ("llama3.2", "qwen2.5", "mistral")
    records = [
        rec(
            f"ok{i}",
            i * 7.0 + (i % 2) * 0.2,
            model=models[i % 3],
            eval_count=40 + (i * 37) % 200,
            prompt=f"Question {i}: " + "why is the sky blue? " * (1 + i % 9),
            prompt_eval_count=20 + 12 * (i % 9),
            ttft_ms=70.0 + (i * 13) % 90,
        )
        for i in range(n)
    ]
    t = n * 7.0
    records += [
        rec(
            f"thrash{i}",
            t + i * 9,
            model=("big-a", "big-b")[i % 2],
            load_duration_ms=4000.0 + 300 * i,
            total_duration_ms=4600.0 + 300 * i,
            total_ms=4620.0 + 300 * i,
            ttft_ms=4100.0 + 300 * i,
        )
        for i in range(5)
    ]
    t += 60
    records += [
        rec(
            f"queue{i}",
            t + i * 0.05,
            total_duration_ms=580.0 + 1100 * i,
            total_ms=600.0 + 1100 * i,
            ttft_ms=80.0 + 1100 * i,
        )
        for i in range(4)
    ]
    t += 10
    records += [
        rec(f"ctx{i}", t + i * 3, prompt_eval_count=2048, prompt="long document " * (1500 + 600 * i)) for i in range(4)
    ]
    t += 20
    records += [rec(f"cut{i}", t + i * 2, done_reason="length", eval_count=128) for i in range(3)]
    records.append(rec("stalled", t + 8, gap_max_ms=2600.0, total_ms=3200.0))
    t += 20
    records += [rec(f"slow{i}", t + i * 3, eval_tokens_per_s=31.0, wire_tokens_per_s=30.0) for i in range(4)]
    t += 20
    errors: list[dict[str, Any]] = [
        {"status": 404, "error": "model 'llama9' not found", "model": "llama9"},
        {"status": 500, "error": "model requires more system memory (40.0 GiB) than is available (16.0 GiB)"},
        {"status": 500, "error": "llama runner process has terminated"},
        {"error": "an error was encountered while running the model", "flags": ["error_mid_stream"]},
        {"status": None, "error": "Connection refused", "flags": ["upstream_failed", "no_response"]},
        {"flags": ["client_aborted"], "done_reason": None, "complete": False},
    ]
    for i, overrides in enumerate(errors):
        records.append(rec(f"err{i}", t + i * 4, total_duration_ms=None, load_duration_ms=None, **overrides))
    records.append(rec("gap", t + 30, source="pcap", flags=["gap_in_capture"]))
    records.append(rec("window", t + 34, source="pcap", flags=["capture_ended_mid_response"], complete=False))
    records.append(
        rec(
            "openai",
            t + 40,
            api="openai",
            path="/v1/chat/completions",
            total_duration_ms=None,
            load_duration_ms=None,
            prompt_eval_duration_ms=None,
            eval_duration_ms=None,
            eval_tokens_per_s=None,
        )
    )
    return records


def with_resources(records: list[InteractionRecord], every: int = 1) -> list[InteractionRecord]:
    """``records`` with the resource columns a sampler would have filled on every ``every``-th record that got an
    answer (status 200 with an ``eval_count``): GPU utilisation, power, memory, energy shares, server CPU/RSS."""
    out = []
    for i, record in enumerate(records):
        if i % every or record.status != 200 or not record.eval_count:
            out.append(record)
            continue
        seconds = (record.total_ms or 0.0) / 1000.0
        power = 90.0 + (i * 17) % 120
        energy = round(power * seconds * 0.8, 3)
        out.append(
            replace(
                record,
                gpu_util_mean_pct=float(35 + (i * 13) % 60),
                gpu_mem_max_mb=5200.0 + (i % 3) * 900,
                power_mean_w=power,
                energy_j=energy,
                joules_per_token=round(energy / record.eval_count, 4),
                server_cpu_ms=round(seconds * 600.0, 1),
                server_rss_max_mb=4100.0 + (i % 5) * 150,
            )
        )
    return out
