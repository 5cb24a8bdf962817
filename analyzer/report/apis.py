"""The per-API breakdown: which of Ollama's APIs (native, OpenAI-compatible, Anthropic) and endpoints carried the
traffic, how fast each answered, and how long it thought."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from analyzer.protocol.timing import percentile
from analyzer.report.derive import Request


def _p50(values: list[float]) -> float | None:
    return round(percentile(sorted(values), 50), 1) if values else None


def api_rows(requests: Sequence[Request]) -> list[dict[str, Any]]:
    """Per (API, kind), busiest first: requests, errors, streamed TTFT p50, thinking p50 (streams that thought),
    the share of requests that called tools, tokens in and out."""
    groups: dict[tuple[str, str], list[Request]] = defaultdict(list)
    for r in requests:
        groups[(r.api or "?", r.kind or "?")].append(r)
    rows = []
    for (api, kind), rows_of in sorted(groups.items(), key=lambda item: (-len(item[1]), item[0])):
        ttft = [r.ttft_ms for r in rows_of if r.ttft_ms is not None and r.stream]
        thinking = [r.thinking_ms for r in rows_of if r.thinking_ms is not None]
        rows.append(
            {
                "api": api,
                "kind": kind,
                "requests": len(rows_of),
                "errors": sum(1 for r in rows_of if r.category),
                "ttft_p50_ms": _p50(ttft),
                "thinking_p50_ms": _p50(thinking),
                "tool_calls": sum(1 for r in rows_of if r.tool_calls),
                "tokens_in": sum(r.prompt_eval_count or 0 for r in rows_of),
                "tokens_out": sum(r.eval_count or 0 for r in rows_of),
            }
        )
    return rows
