"""The headline numbers: how much traffic, how many errors, how fast each model answered; what the requests used
of the machine (when sampled) and what they cost (when prices are given)."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from typing import Any

from analyzer.protocol.timing import percentile
from analyzer.report.apis import api_rows
from analyzer.report.derive import Request
from analyzer.report.finding import iso
from analyzer.report.machine import cost_numbers, prices_dict, resource_numbers
from analyzer.report.overlap import behind_same_model
from analyzer.resources.cost import Prices


def _pct(ordered: list[float], pct: float) -> float | None:
    return round(percentile(ordered, pct), 1) if ordered else None


MODELS_SHOWN = 30  # per-model rows: the busiest models, then one row for all the others


def model_rows(
    requests: Sequence[Request], prices: Prices | None = None, sampled: bool = False, limit: int = MODELS_SHOWN
) -> list[dict[str, Any]]:
    """Per model (busiest first): requests, errors, TTFT p50/p95 (wire), tokens/s p50/p95 (Ollama's, else wire);
    with ``sampled`` the resource numbers, with ``prices`` the two costs.

    Clients choose model names: beyond the ``limit`` busiest, the other models' requests make one more row,
    model ``(N other models)`` with ``"others": N``, so the report stays readable with thousands of names.
    """
    by_model: dict[str, list[Request]] = defaultdict(list)
    for r in requests:
        if r.model:
            by_model[r.model].append(r)
    ranked = sorted(by_model.items(), key=lambda item: -len(item[1]))
    groups = ranked[:limit]
    rest = ranked[limit:]
    if rest:
        groups.append((f"({len(rest):,} other models)", [r for _, rows_of in rest for r in rows_of]))
    rows = []
    for model, rows_of in groups:
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
        if rest and len(rows) == len(groups):
            rows[-1]["others"] = len(rest)
        if sampled:
            rows[-1].update(resource_numbers(rows_of))
        if prices is not None:
            rows[-1].update(cost_numbers(rows_of, prices))
    return rows


def real_hidden_wait(requests: Sequence[Request]) -> dict[str, Any]:
    """The hidden wait that was waiting: summed over requests that arrived while an earlier request of the same model
    ran (the only time a slot can be busy); a lone request's few ms of templating are no wait. None when no request
    reports the parts (OpenAI/Anthropic/embed only): unknown, not zero."""
    behind = behind_same_model(requests)
    known = [r for r in requests if r.hidden_wait_ms is not None]
    waits = [r.hidden_wait_ms or 0.0 for r in known if id(r) in behind]
    return {
        "hidden_wait_ms": round(sum(waits), 1) if known else None,
        "hidden_wait_requests": sum(1 for w in waits if w > 0),
    }


def headline(requests: Sequence[Request], prices: Prices | None = None) -> dict[str, Any]:
    """The numbers at the top of the report (and of ``report --json``). Resource numbers only when a request was
    sampled; costs (and the prices used) only with ``prices``."""
    if not requests:
        empty: dict[str, Any] = {"requests": 0, "errors": 0, "models": [], "per_model": [], "per_api": []}
        if prices is not None:
            empty.update(cost_numbers([], prices), prices=prices_dict(prices))
        return empty
    hours = Counter(int(r.start // 3600) for r in requests)
    busiest, busiest_n = max(hours.items(), key=lambda item: (item[1], -item[0]))
    categories = Counter(c for c in (r.category for r in requests) if c)
    numbers: dict[str, Any] = {
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
        **real_hidden_wait(requests),
    }
    sampled = any(r.sampled for r in requests)
    if sampled:
        numbers.update(resource_numbers(requests))
    if prices is not None:
        numbers.update(cost_numbers(requests, prices), prices=prices_dict(prices))
    numbers["per_model"] = model_rows(requests, prices, sampled)
    numbers["per_api"] = api_rows(requests)
    return numbers
