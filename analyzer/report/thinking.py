"""The ``long_thinking`` finding: a model spends most of its requests' time thinking before it answers.

Its own module so the rule, its thresholds and its evidence sit together; ``findings.RULES`` lists it.
Evidence is the wire's own clock: ``thinking_ms`` (first thinking token → first token that is not thinking) over
``total_ms`` (the whole exchange), for streamed requests that thought and then answered — a single JSON body
arrives at once and says nothing about when thinking ended, so it is never evidence.
"""

from __future__ import annotations

import statistics
from collections import Counter, defaultdict
from collections.abc import Sequence

from analyzer.report.derive import Request
from analyzer.report.finding import INFO, Finding, make_finding

# A model's requests that thought: at least LONG_THINKING_MIN_REQUESTS of them, their median share of the request
# spent thinking at least LONG_THINKING_SHARE, and their median thinking at least LONG_THINKING_MIN_MS (a short
# think is not worth changing settings for). The evidence is the requests at or above the share.
LONG_THINKING_MIN_REQUESTS = 3
LONG_THINKING_SHARE = 0.5
LONG_THINKING_MIN_MS = 2000.0


def thinking_share(r: Request) -> float | None:
    """The share of the request's time between its first thinking token and its first answer; None if unknown."""
    if r.thinking_ms is None or not r.total_ms or r.total_ms <= 0:
        return None
    return min(1.0, r.thinking_ms / r.total_ms)


def _seconds(ms: float) -> str:
    return f"{ms / 1000:.1f} s"


def long_thinking(requests: Sequence[Request]) -> list[Finding]:
    """Per model: most of each request's time went to thinking (see the thresholds above)."""
    by_model: dict[str, list[tuple[Request, float]]] = defaultdict(list)
    for r in requests:
        share = thinking_share(r)
        if share is not None:
            by_model[r.model or "?"].append((r, share))
    found = []
    for model, rows in sorted(by_model.items()):
        if len(rows) < LONG_THINKING_MIN_REQUESTS:
            continue
        median_share = statistics.median(share for _, share in rows)
        median_ms = statistics.median(r.thinking_ms for r, _ in rows)
        if median_share < LONG_THINKING_SHARE or median_ms < LONG_THINKING_MIN_MS:
            continue
        evidence = [r for r, share in rows if share >= LONG_THINKING_SHARE]
        asked = Counter(r.opt_think or "not set" for r, _ in rows)
        settings = ", ".join(f"{value} ×{n}" for value, n in asked.most_common())
        found.append(
            make_finding(
                "long_thinking",
                INFO,
                "performance",
                f"{model} spends most of its time thinking",
                f"Across {len(rows)} streamed requests of {model} that thought before answering, thinking took a "
                f"median {median_share:.0%} of the request ({_seconds(median_ms)} from the first thinking token to "
                f"the first answer token); {len(evidence)} of them thought for at least half their time. The "
                f"requests asked for think: {settings}.",
                'Where the answers do not need long reasoning, ask for less: native `think: "low"` (models with '
                'levels, like gpt-oss) or `think: false`; OpenAI `reasoning_effort: "low"` or `"none"`; '
                'Anthropic `thinking: {"type": "disabled"}`. Compare answers before and after on your own '
                "prompts (ollama-wire replay).",
                evidence,
                {
                    "model": model,
                    "requests": len(rows),
                    "median_thinking_share": round(median_share, 3),
                    "median_thinking_ms": round(median_ms, 1),
                    "think": dict(asked),
                },
            )
        )
    return found
