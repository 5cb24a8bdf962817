"""What the requests used of the machine and what they cost: the report's resource and cost numbers.

Resources come from the records' resource columns (docs/record.md "Resources"; empty unless a sampler covered
the request). Costs are derived here, when the records are read, from a prices file
(:mod:`analyzer.resources.cost`): never stored, no built-in prices. ``cost_energy_usd`` counts only the requests
whose energy is known; ``cost_api_usd`` only the models the prices file names.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, cast

from analyzer.report.derive import Request
from analyzer.resources.cost import Prices, cost_columns

USD_DIGITS = 9  # as analyzer.resources.cost rounds each request's cost


def request_costs(request: Request, prices: Prices) -> dict[str, float | None]:
    """``cost_energy_usd`` and ``cost_api_usd`` of one request (None where the fact or the price is missing).

    The same rule as ``logs --prices``: :func:`cost_columns` reads only ``energy_j``, ``model``,
    ``prompt_eval_count`` and ``eval_count``, which the report's request view carries under those names.
    """
    return cost_columns(cast(Any, request), prices)


def _weighted_mean(rows: Sequence[Request], column: str) -> float | None:
    """Mean of a gauge column over the requests that have it, weighted by each request's duration."""
    total = weight = 0.0
    for r in rows:
        value = getattr(r, column)
        if value is None:
            continue
        w = max(r.total_ms or 0.0, 1.0)
        total += value * w
        weight += w
    return round(total / weight, 1) if weight else None


def _max(rows: Sequence[Request], column: str) -> float | None:
    values = [v for v in (getattr(r, column) for r in rows) if v is not None]
    return round(max(values), 1) if values else None


def resource_numbers(rows: Sequence[Request]) -> dict[str, Any]:
    """Resource totals of ``rows``: how many were sampled, energy (J) and joules per output token over the
    requests with energy, duration-weighted mean GPU utilisation and power, peak GPU memory and server RSS,
    the server's CPU time. A number is None when no request carried its column."""
    energy_rows = [r for r in rows if r.energy_j is not None]
    energy = sum(r.energy_j or 0.0 for r in energy_rows)
    # J/token over the requests whose energy *and* output tokens are known: an unknown count is not 0 tokens
    per_token = [r for r in energy_rows if r.eval_count]
    token_energy = sum(r.energy_j or 0.0 for r in per_token)
    tokens = sum(r.eval_count or 0 for r in per_token)
    cpu = [r.server_cpu_ms for r in rows if r.server_cpu_ms is not None]
    return {
        "sampled_requests": sum(1 for r in rows if r.sampled),
        "energy_j": round(energy, 3) if energy_rows else None,
        "joules_per_token": round(token_energy / tokens, 4) if tokens else None,
        "energy_sources": sorted({r.energy_source for r in energy_rows if r.energy_source}),
        "gpu_mem_sources": sorted(
            {r.gpu_mem_source for r in rows if r.gpu_mem_max_mb is not None and r.gpu_mem_source}
        ),
        "gpu_util_mean_pct": _weighted_mean(rows, "gpu_util_mean_pct"),
        "power_mean_w": _weighted_mean(rows, "power_mean_w"),
        "gpu_mem_max_mb": _max(rows, "gpu_mem_max_mb"),
        "server_rss_max_mb": _max(rows, "server_rss_max_mb"),
        "server_cpu_ms": round(sum(cpu), 1) if cpu else None,
    }


def cost_numbers(rows: Sequence[Request], prices: Prices) -> dict[str, Any]:
    """The two cost sums of ``rows`` (None when no request had that cost) and how many requests each covers."""
    sums: dict[str, float | None] = {"cost_energy_usd": None, "cost_api_usd": None}
    counted = {"cost_energy_usd": 0, "cost_api_usd": 0}
    for r in rows:
        for name, value in request_costs(r, prices).items():
            if value is not None:
                sums[name] = (sums[name] or 0.0) + value
                counted[name] += 1
    return {
        "cost_energy_usd": None if sums["cost_energy_usd"] is None else round(sums["cost_energy_usd"], USD_DIGITS),
        "cost_api_usd": None if sums["cost_api_usd"] is None else round(sums["cost_api_usd"], USD_DIGITS),
        "cost_energy_requests": counted["cost_energy_usd"],
        "cost_api_requests": counted["cost_api_usd"],
    }


def prices_dict(prices: Prices) -> dict[str, Any]:
    """The prices a report used, for its JSON (so a figure can be checked against them)."""
    return {
        "kwh": prices.kwh,
        "models": {name: {"input": p.input, "output": p.output} for name, p in sorted(prices.models.items())},
    }


def usd(value: float | None) -> str:
    """``$12.34`` from a dollar up; below, three significant digits (``$0.0123``, ``$0.00075``); ``<$0.000001``
    for a tiny non-zero amount; ``–`` when unknown."""
    if value is None:
        return "–"
    if value >= 1 or value == 0:
        return f"${value:,.2f}"
    if value < 0.000001:
        return "<$0.000001"
    digits = 2 - math.floor(math.log10(value))
    text = f"{value:.{digits}f}".rstrip("0")
    return "$" + (text + "0" if len(text.split(".")[1]) < 2 else text)


ENERGY_UNITS = (("kWh", 3_600_000.0), ("Wh", 3600.0), ("J", 1.0))


def energy_unit(largest: float | None) -> str:
    """The unit that reads best for amounts up to ``largest`` joules (J, Wh or kWh)."""
    return next((name for name, size in ENERGY_UNITS if (largest or 0.0) >= size), "J")


def energy(joules: float | None, unit: str | None = None) -> str:
    """Joules as J, Wh or kWh (``unit``, else whichever reads best); ``–`` when unknown."""
    if joules is None:
        return "–"
    chosen = unit or energy_unit(joules)
    size = dict(ENERGY_UNITS)[chosen]
    return f"{joules / size:,.{1 if chosen == 'J' else 2}f} {chosen}"


def cost_line(head: dict[str, Any]) -> str | None:
    """One line on what the period cost (None without prices)."""
    if "cost_api_usd" not in head:
        return None
    requests = head["requests"]
    parts = []
    if head.get("prices", {}).get("kwh") is not None:
        if head["cost_energy_usd"] is None:
            parts.append("electricity: – (no request carries energy_j)")
        else:
            parts.append(
                f"electricity {usd(head['cost_energy_usd'])} "
                f"({head['cost_energy_requests']:,} of {requests:,} requests with energy)"
            )
    if head.get("prices", {}).get("models"):
        if head["cost_api_usd"] is None:
            parts.append("hosted API: – (no priced model)")
        else:
            parts.append(
                f"on a hosted API {usd(head['cost_api_usd'])} "
                f"({head['cost_api_requests']:,} of {requests:,} requests priced)"
            )
    return "cost: " + ("; ".join(parts) if parts else "the prices file names no kwh and no models")


SOURCE_LABELS = {
    "nvml_counter": "NVML energy counter",
    "power_integral": "integrated power readings",
    "macmon": "macmon power, integrated",
    "powermetrics": "powermetrics energy",
    "nvml": "NVML",
    "ollama_ps": "Ollama /api/ps size_vram",
}


def sources_text(names: Any) -> str:
    """``names`` (provenance values) as words for a label: ``NVML energy counter``; empty when none is known."""
    return ", ".join(SOURCE_LABELS.get(str(n), str(n)) for n in names or [])


def energy_line(head: dict[str, Any]) -> str | None:
    """One line on the energy the sampled requests used (None when none was sampled)."""
    if not head.get("sampled_requests"):
        return None
    parts = [f"{head['sampled_requests']:,} of {head['requests']:,} requests sampled"]
    if head.get("energy_j") is not None:
        source = sources_text(head.get("energy_sources"))
        parts.append(f"energy {energy(head['energy_j'])}" + (f" ({source})" if source else ""))
    if head.get("joules_per_token") is not None:
        parts.append(f"{head['joules_per_token']:.3g} J/token")
    if head.get("power_mean_w") is not None:
        parts.append(f"mean power {head['power_mean_w']:,.0f} W")
    return "resources: " + ", ".join(parts)
