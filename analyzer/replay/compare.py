"""Before/after: pair each replayed request with its original (or two replays of the same original) and compare.

Both sides are measured the same way (the same builder, the same derived timings), only over the requests that
were paired, per model. Every change comes with a noise estimate: half the width of a 90 % bootstrap interval of
the statistic on each side (seeded, so a comparison always prints the same numbers); a change counts only when it
is larger than the two noises together. The verdict sentence names what changed beyond noise, first.
"""

from __future__ import annotations

import json
import random
import statistics
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from analyzer.protocol.endpoints import OLLAMA_PORT
from analyzer.protocol.record import InteractionRecord
from analyzer.protocol.timing import percentile
from analyzer.report.analysis import analyze
from analyzer.report.derive import Request, to_request
from analyzer.report.findings import COLD_LOAD_MS
from analyzer.sources import SourceError, read_sources
from analyzer.store.log import LogError
from analyzer.store.select import SOURCE_REPLAY

LABEL_PREFIX = "label:"
BOOTSTRAP_ROUNDS = 200
MIN_SAMPLES = 5
NOISE_CONFIDENCE = 0.90
JSON_VERSION = 1
RATIO_FLOOR = 1.0  # below this (ms, tok/s) a ratio says nothing: the change is shown as a difference

Stat = Callable[[list[float]], float]


class CompareError(Exception):
    """A side that cannot be read or nothing to pair; the message is one line."""


@dataclass
class Side:
    """One side of a comparison: its name as shown, and its records (originals, or the replays of one label)."""

    spec: str
    name: str
    records: list[InteractionRecord]


def _name(spec: str) -> str:
    if spec.startswith(LABEL_PREFIX):
        return spec[len(LABEL_PREFIX) :]
    path = Path(spec)
    return path.name or str(path)


def load_side(
    spec: str,
    *,
    label_dirs: Sequence[Path],
    warn: Callable[[str], None] | None = None,
    ports: tuple[int, ...] = (OLLAMA_PORT,),
) -> Side:
    """``label:NAME`` → the replay records labelled NAME in ``label_dirs``; any other SOURCE → its records that are
    not replays, or (a directory a replay wrote to) its replay records."""
    try:
        return _load_side(spec, label_dirs, warn, ports)
    except (SourceError, LogError) as exc:
        raise CompareError(str(exc)) from None


def _load_side(
    spec: str, label_dirs: Sequence[Path], warn: Callable[[str], None] | None, ports: tuple[int, ...]
) -> Side:
    if spec.startswith(LABEL_PREFIX):
        name = spec[len(LABEL_PREFIX) :]
        if not name:
            raise CompareError(f"{spec!r}: give the replay's label after label:")
        everything = read_sources(label_dirs, warn=warn, ports=ports, include_replays=True)
        chosen = [r for r in everything if r.source == SOURCE_REPLAY and r.replay_label == name]
        if not chosen:
            labels = sorted({r.replay_label for r in everything if r.replay_label})
            where = ", ".join(str(d) for d in label_dirs)
            known = f" (labels there: {', '.join(labels[:10])})" if labels else " (no replays there)"
            raise CompareError(f"{spec}: no replay with that label in {where}{known}")
        return Side(spec, name, chosen)
    records = read_sources([spec], warn=warn, ports=ports, include_replays=True)
    originals = [r for r in records if r.source != SOURCE_REPLAY]
    if originals:
        return Side(spec, _name(spec), originals)
    labels = sorted({r.replay_label or "" for r in records})
    if len(labels) > 1:
        raise CompareError(
            f"{spec}: holds several replays ({', '.join(labels[:10])}): name one as label:NAME --log-dir {spec}"
        )
    return Side(spec, labels[0] if labels and labels[0] else _name(spec), records)


def origin(record: InteractionRecord) -> str:
    """The id of the recorded request a record stands for: what it replays, else itself."""
    return record.replay_of or record.id


def pair(baseline: Side, candidate: Side) -> list[tuple[InteractionRecord, InteractionRecord]]:
    """(baseline, candidate) records of the same original request, in the baseline's time order; a request
    replayed twice into one side counts once (its first record)."""
    first: dict[str, InteractionRecord] = {}
    for record in sorted(candidate.records, key=lambda r: r.started_at):
        first.setdefault(origin(record), record)
    pairs = []
    seen: set[str] = set()
    for record in sorted(baseline.records, key=lambda r: r.started_at):
        key = origin(record)
        if key in first and key not in seen and record is not first[key]:
            seen.add(key)
            pairs.append((record, first[key]))
    return pairs


# -- statistics -----------------------------------------------------------------------------------------------
def _p(pct: float) -> Stat:
    return lambda values: percentile(sorted(values), pct)


def _mean(values: list[float]) -> float:
    return statistics.fmean(values)


def noise(values: list[float], stat: Stat, rounds: int = BOOTSTRAP_ROUNDS) -> float | None:
    """Half the width of the bootstrap interval (NOISE_CONFIDENCE) of ``stat`` over ``values``; None for fewer than
    MIN_SAMPLES (too few to tell a change from chance: no change is then called significant)."""
    if len(values) < MIN_SAMPLES:
        return None
    rng = random.Random(len(values))  # seeded: the same comparison prints the same numbers
    estimates = sorted(stat([rng.choice(values) for _ in values]) for _ in range(rounds))
    tail = (1 - NOISE_CONFIDENCE) / 2 * 100
    return (percentile(estimates, 100 - tail) - percentile(estimates, tail)) / 2


@dataclass(frozen=True)
class Metric:
    """A per-side statistic: its JSON key, what it reads from a request, how it aggregates, higher is better?"""

    key: str
    label: str
    value: Callable[[Request], float | None]
    stat: Stat
    higher_is_better: bool = False
    unit: str = "ms"


METRICS: tuple[Metric, ...] = (
    Metric("ttft_p50_ms", "TTFT p50", lambda r: r.ttft_ms, _p(50)),
    Metric("ttft_p95_ms", "TTFT p95", lambda r: r.ttft_ms, _p(95)),
    Metric("tokens_per_s_p50", "tokens/s per stream", lambda r: r.tokens_per_s, _p(50), True, "tok/s"),
    Metric("hidden_wait_p95_ms", "hidden wait p95", lambda r: r.hidden_wait_ms, _p(95)),
    Metric("load_ms", "load (mean)", lambda r: r.load_ms, _mean),
    Metric("total_p95_ms", "total p95", lambda r: r.total_ms, _p(95)),
)


def _failed(r: Request) -> bool:
    return bool(r.error) or (r.status is not None and r.status >= 400)


def side_stats(requests: Sequence[Request]) -> tuple[dict[str, Any], dict[str, float | None]]:
    """The JSON numbers of one side (``requests``, ``errors``, every METRICS key, ``cold_loads``, tokens) and
    each metric's noise."""
    stats: dict[str, Any] = {"requests": len(requests), "errors": sum(1 for r in requests if _failed(r))}
    noises: dict[str, float | None] = {}
    for metric in METRICS:
        values = [v for v in (metric.value(r) for r in requests) if v is not None]
        stats[metric.key] = round(metric.stat(values), 3) if values else None
        noises[metric.key] = round(n, 3) if values and (n := noise(values, metric.stat)) is not None else None
    stats["cold_loads"] = sum(1 for r in requests if r.load_ms is not None and r.load_ms >= COLD_LOAD_MS)
    stats["tokens_in"] = sum(r.prompt_eval_count or 0 for r in requests)
    stats["tokens_out"] = sum(r.eval_count or 0 for r in requests)
    return stats, noises


def change(
    metric: Metric, before: float | None, after: float | None, noises: tuple[float | None, float | None]
) -> dict[str, Any]:
    """The change of one metric: delta, ratio, the noise of both sides together, and whether it exceeds it."""
    if before is None or after is None:
        return {"delta": None, "ratio": None, "noise": None, "significant": False}
    spread = sum(n for n in noises if n is not None)
    delta = after - before
    return {
        "delta": round(delta, 3),
        "ratio": round(after / before, 4) if abs(before) >= RATIO_FLOOR else None,
        "noise": round(spread, 3),
        "significant": abs(delta) > spread and None not in noises,
    }


# -- outputs of the paired requests ---------------------------------------------------------------------------
def _options(record: InteractionRecord) -> tuple[Any, Any]:
    """(seed, temperature) the request set: the record's opt_* columns, else read from its body."""
    seed, temperature = record.opt_seed, record.opt_temperature
    if (seed is None or temperature is None) and record.request_body:
        try:
            body = json.loads(record.request_body)
        except (ValueError, RecursionError):
            body = None
        if isinstance(body, dict):
            given = body.get("options")
            options: dict[str, Any] = given if isinstance(given, dict) else {}
            seed = seed if seed is not None else options.get("seed", body.get("seed"))
            temperature = (
                temperature if temperature is not None else options.get("temperature", body.get("temperature"))
            )
    return seed, temperature


def deterministic(record: InteractionRecord) -> bool:
    """The request fixed its seed and asked for temperature 0: the same server must give the same text."""
    seed, temperature = _options(record)
    return isinstance(seed, int) and not isinstance(seed, bool) and temperature == 0


def outputs(pairs: Sequence[tuple[InteractionRecord, InteractionRecord]]) -> dict[str, Any]:
    """Identical texts among deterministic pairs; for the rest, how similar lengths and done_reasons are."""
    fixed = [(b, c) for b, c in pairs if deterministic(b) and not b.error and not c.error]
    free = [(b, c) for b, c in pairs if not deterministic(b) and not b.error and not c.error]
    ratios = []
    for b, c in free:
        lengths = len(b.response_text), len(c.response_text)
        if max(lengths):
            ratios.append(min(lengths) / max(lengths))
    same_reason = sum(1 for b, c in free if b.done_reason == c.done_reason)
    return {
        "deterministic": len(fixed),
        "identical": sum(1 for b, c in fixed if b.response_text == c.response_text),
        "differing_ids": [b.id for b, c in fixed if b.response_text != c.response_text][:20],
        "other": len(free),
        "length_similarity_p50": round(statistics.median(ratios), 3) if ratios else None,
        "same_done_reason": same_reason,
    }


# -- the comparison -------------------------------------------------------------------------------------------
@dataclass
class Comparison:
    baseline: Side
    candidate: Side
    pairs: list[tuple[InteractionRecord, InteractionRecord]]
    per_model: list[dict[str, Any]] = field(default_factory=list)
    overall: dict[str, Any] = field(default_factory=dict)
    findings: dict[str, list[str]] = field(default_factory=dict)
    outputs: dict[str, Any] = field(default_factory=dict)
    verdict: str = ""
    requests: tuple[list[Request], list[Request]] = ([], [])
    finding_titles: dict[str, str] = field(default_factory=dict)  # code → title, for the page

    def to_dict(self) -> dict[str, Any]:
        """The ``compare --json`` document."""
        return {
            "version": JSON_VERSION,
            "verdict": self.verdict,
            "baseline": self.baseline.spec,
            "candidate": self.candidate.spec,
            "pairs": len(self.pairs),
            "findings": self.findings,
            "per_model": self.per_model,
            "overall": self.overall,
            "outputs": self.outputs,
        }


def _block(base: Sequence[Request], cand: Sequence[Request], model: str) -> dict[str, Any]:
    before, noise_b = side_stats(base)
    after, noise_c = side_stats(cand)
    changes = {m.key: change(m, before[m.key], after[m.key], (noise_b[m.key], noise_c[m.key])) for m in METRICS}
    return {"model": model, "baseline": before, "candidate": after, "change": changes}


def compare(baseline: Side, candidate: Side) -> Comparison:
    """Pair the sides and compute everything ``compare`` shows. Raises CompareError when nothing pairs."""
    pairs = pair(baseline, candidate)
    if not pairs:
        raise CompareError(
            f"nothing to compare: no record of {candidate.spec} replays one of {baseline.spec} "
            f"({len(baseline.records)} and {len(candidate.records)} records); compare a log with a replay of it, "
            "e.g. ollama-wire compare LOG label:NAME"
        )
    result = Comparison(baseline, candidate, pairs)
    views = [(to_request(b), to_request(c)) for b, c in pairs]
    kept = [(b, c) for b, c in views if b is not None and c is not None]
    base_requests = [b for b, _ in kept]
    cand_requests = [c for _, c in kept]
    result.requests = (base_requests, cand_requests)
    by_model: dict[str, tuple[list[Request], list[Request]]] = defaultdict(lambda: ([], []))
    for b, c in kept:
        by_model[b.model or "-"][0].append(b)
        by_model[b.model or "-"][1].append(c)
    result.per_model = [_block(b, c, model) for model, (b, c) in sorted(by_model.items())]
    result.overall = _block(base_requests, cand_requests, "all")
    found_b = analyze([b for b, _ in pairs]).findings
    found_c = analyze([c for _, c in pairs]).findings
    result.finding_titles = {f.code: f.title for f in [*found_b, *found_c]}
    codes_b = {f.code for f in found_b}
    codes_c = {f.code for f in found_c}
    result.findings = {
        "resolved": sorted(codes_b - codes_c),
        "new": sorted(codes_c - codes_b),
        "kept": sorted(codes_b & codes_c),
    }
    result.outputs = outputs(pairs)
    result.verdict = verdict(result)
    return result


def _ms(value: float | None) -> str:
    if value is None:
        return "–"
    return f"{value / 1000:.1f} s" if abs(value) >= 1000 else f"{value:.0f} ms"


def _metric_text(metric: Metric, block: dict[str, Any]) -> str:
    before, after = block["baseline"][metric.key], block["candidate"][metric.key]
    if metric.unit == "tok/s":
        ratio = block["change"][metric.key]["ratio"]
        return f"{metric.label} {(ratio - 1) * 100:+.0f} %".replace("-", "−") if ratio else f"{metric.label} –"
    return f"{metric.label} {_ms(before)} → {_ms(after)}"


def verdict(result: Comparison) -> str:
    """One sentence: what changed beyond noise, with the numbers; the most telling first."""
    block = result.overall
    metrics = {m.key: m for m in METRICS}
    significant = {key for key, c in block["change"].items() if c["significant"]}
    parts: list[str] = []
    resolved, new = set(result.findings["resolved"]), set(result.findings["new"])
    wait = _metric_text(metrics["hidden_wait_p95_ms"], block)
    if "queueing" in resolved:
        parts.append(f"queueing gone ({wait})")
    elif "queueing" in new:
        parts.append(f"queueing appeared ({wait})")
    elif "hidden_wait_p95_ms" in significant:
        parts.append(wait)
    loads = f"{block['baseline']['cold_loads']} → {block['candidate']['cold_loads']}"
    if "cold_load" in resolved:
        parts.append(f"cold loads gone ({loads}, {_metric_text(metrics['load_ms'], block)})")
    elif "cold_load" in new:
        parts.append(f"cold loads appeared ({loads}, {_metric_text(metrics['load_ms'], block)})")
    elif "load_ms" in significant:
        parts.append(_metric_text(metrics["load_ms"], block))
    for key in ("ttft_p95_ms", "tokens_per_s_p50", "total_p95_ms"):
        if key in significant:
            parts.append(_metric_text(metrics[key], block))
    errors = (block["baseline"]["errors"], block["candidate"]["errors"])
    if errors[0] != errors[1]:
        parts.append(f"errors {errors[0]} → {errors[1]}")
    for code in sorted(resolved - {"queueing", "cold_load"}):
        parts.append(f"{code} gone")
    for code in sorted(new - {"queueing", "cold_load"}):
        parts.append(f"new {code}")
    head = f"{result.baseline.name} → {result.candidate.name}"
    count = f"{len(result.pairs)} paired request{'' if len(result.pairs) == 1 else 's'}"
    if not parts:
        ttft = block["change"]["ttft_p95_ms"]
        spread = f" ± {_ms(ttft['noise'])}" if ttft["noise"] is not None else ""
        return f"{head}: no change beyond noise over {count} ({_metric_text(metrics['ttft_p95_ms'], block)}{spread})."
    return f"{head}: " + ", ".join(parts) + f" ({count})."
