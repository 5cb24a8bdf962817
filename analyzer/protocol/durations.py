"""What Ollama's own duration counters imply, per endpoint: the one definition of hidden wait.

``hidden_wait = total_duration − load_duration − prompt_eval_duration − eval_duration`` (never negative): the time
Ollama spent that it reports nowhere else — chiefly waiting for a free slot of a busy runner
(``OLLAMA_NUM_PARALLEL``), which happens after ``load_duration`` ends and before prompt evaluation starts.

Whether a missing part is zero or unknown depends on the endpoint:

* native ``/api/generate`` and ``/api/chat``: the final object carries all four durations, and Go's
  ``omitempty`` drops a zero one — an omitted part *is* 0 (a fully cached prompt has no ``prompt_eval_duration``);
* ``/api/embed`` reports ``total_duration`` and ``load_duration`` only, ``/api/embeddings`` none, and the
  OpenAI/Anthropic/Responses APIs never report the parts: there the hidden wait is unknown (None).

Every layer (the report, the exports, ``top``) reads :func:`hidden_wait_ms`; nothing recomputes it.
"""

from __future__ import annotations

from typing import Any, Protocol

# Endpoints whose final object carries every duration, zeros omitted (api, kind).
FULL_DURATION_ENDPOINTS: frozenset[tuple[str, str]] = frozenset({("ollama", "generate"), ("ollama", "chat")})


class HasDurations(Protocol):
    api: str
    kind: str
    total_duration_ms: float | None
    load_duration_ms: float | None
    prompt_eval_duration_ms: float | None
    eval_duration_ms: float | None


def reports_every_duration(record: HasDurations | Any) -> bool:
    """The record's endpoint reports all four durations (an omitted one is 0)."""
    return (record.api or "", record.kind or "") in FULL_DURATION_ENDPOINTS


def hidden_wait_ms(record: HasDurations | Any) -> float | None:
    """Ollama's total minus its load, prompt-eval and eval durations (≥ 0, ms); None when the endpoint does not
    report the parts or the record has no ``total_duration``."""
    total = record.total_duration_ms
    if total is None or not reports_every_duration(record):
        return None
    parts = (record.load_duration_ms, record.prompt_eval_duration_ms, record.eval_duration_ms)
    return round(max(0.0, total - sum(p or 0.0 for p in parts)), 3)
