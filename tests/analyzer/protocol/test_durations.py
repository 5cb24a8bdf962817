"""The one hidden-wait definition, per endpoint: omitted durations are 0 on native generate/chat (Go's omitempty
drops zeros) and unknown elsewhere (embed reports total and load only; OpenAI/Anthropic never report the parts)."""

from __future__ import annotations

import pytest

from analyzer.export.mapping import hidden_wait_s
from analyzer.protocol.durations import hidden_wait_ms
from analyzer.protocol.record import InteractionRecord
from analyzer.report.derive import to_request


def record(api: str, kind: str, **durations: float | None) -> InteractionRecord:
    return InteractionRecord(id="r", started_at="2026-11-28T21:00:00Z", api=api, kind=kind, model="m", **durations)


@pytest.mark.parametrize(
    ("api", "kind", "durations", "expected"),
    [
        ("ollama", "generate", {"total_duration_ms": 900.0, "load_duration_ms": 100.0, "eval_duration_ms": 300.0}, 500),
        ("ollama", "chat", {"total_duration_ms": 900.0}, 900.0),  # a fully cached prompt omits prompt_eval_duration
        ("ollama", "chat", {"total_duration_ms": None, "load_duration_ms": 5.0}, None),
        ("ollama", "embed", {"total_duration_ms": 900.0, "load_duration_ms": 100.0}, None),
        ("ollama", "embeddings", {"total_duration_ms": 900.0}, None),
        ("openai", "chat", {"total_duration_ms": 900.0, "load_duration_ms": 1.0}, None),
        ("anthropic", "messages", {"total_duration_ms": 900.0}, None),
    ],
)
def test_every_layer_reads_one_definition(
    api: str, kind: str, durations: dict[str, float | None], expected: float | None
) -> None:
    r = record(api, kind, **durations)
    assert hidden_wait_ms(r) == expected
    request = to_request(r)
    assert request is not None and request.hidden_wait_ms == expected  # the report
    assert hidden_wait_s(r) == (None if expected is None else expected / 1000)  # the exports
