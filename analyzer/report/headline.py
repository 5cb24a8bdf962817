"""The headline numbers: how much traffic, how many errors, and how fast each model answered."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from typing import Any

from analyzer.protocol.timing import percentile
from analyzer.report.derive import Request
from analyzer.report.finding import iso


def _pct(ordered: list[float], pct: float) -> float | None:
    return round(percentile(ordered, pct), 1) if ordered else None


def model_rows(requests: Sequence[Request]) -> list[dict[str, Any]]:
    """Per model (busiest first): requests, errors, TTFT p50/p95 (wire), tokens/s p50/p95 (Ollama's, else wire)."""
    by_model: dict[str, list[Request]] = defaultdict(list)
    for r in requests:
        if r.model:
            by_model[r.model].append(r)
    rows = []
    for model, rows_of in sorted(by_model.items(), key=lambda item: -len(item[1])):
        ttft = sorted(r.ttft_ms for r in rows_of if r.ttft_ms is not None and r.stream)
        rate = sorted(v for v in (r.tokens_per_s for r in rows_of) if v)
        rows.append(
            {
                "model": model,
                "requests": len(rows_of),
                "errors": sum(1 for r in rows_of if r.category),
                "ttft_p50_ms": _pct(ttft, 50),
                "ttft_p95_ms": _pct(ttft, 95),
                "tokens_per_s_p50": _pct(rate, 50),
                "tokens_per_s_p95": _pct(rate, 95),
                "tokens_in": sum(r.prompt_eval_count or 0 for r in rows_of),
                "tokens_out": sum(r.eval_count or 0 for r in rows_of),
            }
        )
    return rows


def headline(requests: Sequence[Request]) -> dict[str, Any]:
    """The numbers at the top of the report (and of ``report --json``)."""
    if not requests:
        return {"requests": 0, "errors": 0, "models": [], "per_model": []}
    hours = Counter(int(r.start // 3600) for r in requests)
    busiest, busiest_n = max(hours.items(), key=lambda item: (item[1], -item[0]))
    categories = Counter(c for c in (r.category for r in requests) if c)
    return {
        "requests": len(requests),
        "errors": sum(categories.values()),
        "errors_by_category": dict(categories.most_common()),
        "first": iso(min(r.start for r in requests)),
        "last": iso(max(r.end for r in requests)),
        "models": sorted({r.model for r in requests if r.model}),
        "busiest_hour": {"start": iso(busiest * 3600), "requests": busiest_n},
        "tokens_in": sum(r.prompt_eval_count or 0 for r in requests),
        "tokens_out": sum(r.eval_count or 0 for r in requests),
        "load_ms": round(sum(r.load_ms or 0.0 for r in requests), 1),
        "hidden_wait_ms": round(sum(r.hidden_wait_ms or 0.0 for r in requests), 1),
        "per_model": model_rows(requests),
    }
