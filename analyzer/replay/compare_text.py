"""The comparison as text for a terminal: the verdict first, then per model baseline / candidate / change ± noise."""

from __future__ import annotations

from typing import Any

from analyzer.protocol.untrusted import for_terminal
from analyzer.replay.compare import METRICS, Comparison
from analyzer.store.tables import text_table


def _value(value: Any, unit: str) -> str:
    if value is None:
        return "–"
    if unit == "tok/s":
        return f"{value:.1f} tok/s"
    return f"{value / 1000:.2f} s" if abs(value) >= 1000 else f"{value:.0f} ms"


def _change(metric_unit: str, change: dict[str, Any]) -> tuple[str, str]:
    if change["delta"] is None:
        return "–", ""
    ratio = change["ratio"]
    shown = f"{(ratio - 1) * 100:+.0f} %" if ratio is not None else _value(change["delta"], metric_unit)
    mark = " *" if change["significant"] else ""
    return shown + mark, "± " + _value(change["noise"], metric_unit) if change["noise"] is not None else ""


def model_rows(block: dict[str, Any]) -> list[dict[str, str]]:
    """Rows of one model's table: metric, baseline, candidate, change (``*`` beyond noise), noise."""
    before, after = block["baseline"], block["candidate"]
    rows = [
        {"metric": "requests", "baseline": str(before["requests"]), "candidate": str(after["requests"])},
        {"metric": "errors", "baseline": str(before["errors"]), "candidate": str(after["errors"])},
        {"metric": "cold loads", "baseline": str(before["cold_loads"]), "candidate": str(after["cold_loads"])},
    ]
    for metric in METRICS:
        shown, spread = _change(metric.unit, block["change"][metric.key])
        rows.append(
            {
                "metric": metric.label,
                "baseline": _value(before[metric.key], metric.unit),
                "candidate": _value(after[metric.key], metric.unit),
                "change": shown,
                "noise": spread,
            }
        )
    rows.append(
        {
            "metric": "tokens in / out",
            "baseline": f"{before['tokens_in']:,} / {before['tokens_out']:,}",
            "candidate": f"{after['tokens_in']:,} / {after['tokens_out']:,}",
        }
    )
    return rows


def render_comparison(result: Comparison) -> str:
    """The whole comparison as plain text."""
    lines = [for_terminal(result.verdict), ""]
    lines.append(
        f"{len(result.pairs)} pairs; baseline {for_terminal(result.baseline.spec)} ({len(result.baseline.records)} "
        f"records), candidate {for_terminal(result.candidate.spec)} ({len(result.candidate.records)} records)"
    )
    for block in result.per_model:
        lines.append("")
        lines.append(f"model {for_terminal(block['model'])}")
        table = text_table(model_rows(block), ("metric", "baseline", "candidate", "change", "noise"))
        lines.extend("  " + line for line in table.rstrip("\n").split("\n"))
    found = result.findings
    lines.append("")
    lines.append(
        "findings: " + "; ".join(f"{name} {', '.join(found[name]) or '–'}" for name in ("resolved", "new", "kept"))
    )
    out = result.outputs
    text = f"outputs: {out['deterministic']} deterministic pairs (seed + temperature 0), {out['identical']} identical"
    if out["other"]:
        similarity = out["length_similarity_p50"]
        text += (
            f"; {out['other']} others: length similarity p50 "
            f"{'–' if similarity is None else f'{similarity:.2f}'}, same done_reason {out['same_done_reason']}/"
            f"{out['other']}"
        )
    lines.append(text)
    lines.append("(* a change larger than the noise of both sides together: half a 90 % bootstrap interval each)")
    return "\n".join(lines) + "\n"
