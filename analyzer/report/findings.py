"""The findings engine: each rule reads the requests and returns a finding only when records show it.

Codes are stable (scripts and tests rely on them); docs/report.md describes each with its thresholds, which are
the named constants below (each with its reason). A finding's evidence ids are exactly the requests its text
speaks of; each rule has a clean look-alike in the tests that must stay silent.
"""

from __future__ import annotations

import bisect
import re
import statistics
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from typing import Any

from analyzer.protocol.record import (
    FLAG_CAPTURE_ENDED_MID_REQUEST,
    FLAG_CAPTURE_ENDED_MID_RESPONSE,
    FLAG_CAPTURE_STARTED_MID_REQUEST,
    FLAG_CAPTURE_STARTED_MID_RESPONSE,
    FLAG_GAP_IN_CAPTURE,
)
from analyzer.report import errors
from analyzer.report.derive import Request
from analyzer.report.finding import ERROR, INFO, SEVERITY_ORDER, WARNING, Finding, make_finding
from analyzer.report.overlap import by_model, concurrent_decoders, decoding_pairs, waited_for_a_slot
from analyzer.report.thinking import long_thinking

# cold_load: a load_duration that means the request waited for a load (or for the scheduler): at least
# COLD_LOAD_RATIO × the model's warm load_duration and at least COLD_LOAD_MIN_MS; with no warm request to compare
# with, at least COLD_LOAD_MS. The warm load_duration is the lower quartile (WARM_LOAD_PERCENTILE) of the model's
# load_durations under COLD_LOAD_MS. Warm load_duration is Ollama's look-ups of an already loaded model: 36-205 ms
# measured on real Ollama v0.24.0 on a 2-core machine at load average 12; a small model's load takes well under a
# second (SmolLM2-135M on CPU: from ~250 ms idle to 430-830 ms busy), so a fixed second alone misses loads, and the
# ratio to the warm quartile (not the floor) is what tells a busy machine's slow look-up from a load.
COLD_LOAD_MS = 1000.0
COLD_LOAD_MIN_MS = 200.0
COLD_LOAD_RATIO = 6.0
WARM_LOAD_PERCENTILE = 25.0
# done_reason of Ollama's preload / unload requests (an empty prompt): a deliberate load is not a cold load.
MANAGEMENT_DONE_REASONS = frozenset({"load", "unload"})
# Ollama's default keep_alive (OLLAMA_KEEP_ALIVE unset): a model idle longer than this was unloaded by expiry.
DEFAULT_KEEP_ALIVE_S = 300.0
# model_thrash: at least this many reloads (a model loaded before, loaded again after another model's load, within
# its keep_alive): one reload can be a coincidence, two are a pattern.
THRASH_MIN_RELOADS = 2
# queueing: a request that arrived while an earlier request of the same model ran, whose hidden wait (not its
# load) is at least this (ms) and this share of its total: templating and the hop to the runner take a few ms.
QUEUE_WAIT_MS = 500.0
QUEUE_WAIT_SHARE = 0.25
# context_truncated, ceiling: at least CONTEXT_MIN_PINNED generate/chat requests of a model whose prompt_eval_count
# sits within CONTEXT_PIN_TOLERANCE of the model's highest count (at least CONTEXT_MIN_CEILING tokens), whose
# prompts would need at least CONTEXT_TEXT_RATIO times that many tokens, and whose prompt sizes differ by at least
# CONTEXT_MIN_GROWTH. Tokens a prompt needs: a straight line (tokens = a + b × characters) fitted to the model's
# other requests when at least CONTEXT_MIN_FIT of them with different sizes exist, else characters /
# TYPICAL_CHARS_PER_TOKEN. With the request's own num_ctx recorded, one request at that ceiling whose prompt needs
# CONTEXT_OWN_RATIO × num_ctx is enough: the ceiling is known, not inferred, so the prompt need only evidently exceed
# it (English runs 4-5 characters per token: 1.25 covers a text the typical ratio over-counts). Turns of a chat
# found cut (below) are left out of the fit: their counts say nothing of tokens per character.
CONTEXT_OWN_RATIO = 1.25
CONTEXT_MIN_PINNED = 3
CONTEXT_PIN_TOLERANCE = 0.01
CONTEXT_MIN_CEILING = 32
CONTEXT_TEXT_RATIO = 1.5
CONTEXT_MIN_GROWTH = 1.1
CONTEXT_MIN_FIT = 5
TYPICAL_CHARS_PER_TOKEN = 4.0
# context_truncated, conversation: a chat turn that adds messages worth at least CHAT_MIN_ADDED_TOKENS (characters /
# TYPICAL_CHARS_PER_TOKEN) to the previous turn of the same conversation, while its prompt_eval_count grows by less
# than CHAT_GROWTH_SHARE of that (falls or plateaus: Ollama dropped the oldest messages), in at least
# CHAT_MIN_TURNS turns. With num_ctx recorded the count must also fill at least CHAT_FILL_SHARE of it.
CHAT_MIN_ADDED_TOKENS = 32
CHAT_GROWTH_SHARE = 0.5
CHAT_MIN_TURNS = 2
CHAT_FILL_SHARE = 0.5
# stall: a gap between tokens at least this long (ms) and this many times the stream's median gap. Responses with
# tool calls are left out: Ollama sends nothing while the model writes a call, until the call is parsed.
STALL_MIN_GAP_MS = 1000.0
STALL_GAP_RATIO = 10.0
# slow_generation: among a model's requests decoded with the same number of concurrent decoders of that model
# (batching splits the runner between them), a run of at least SLOW_MIN_RUN consecutive ones (each with at least
# SLOW_MIN_TOKENS generated) at most SLOW_FRACTION of that group's median tokens/s, when the group has at least
# SLOW_MIN_REQUESTS requests.
SLOW_FRACTION = 0.5
SLOW_MIN_RUN = 3
SLOW_MIN_TOKENS = 8
SLOW_MIN_REQUESTS = 6
# parallelism_collapsed: a model whose answers were decoded together at least PARALLEL_MIN_PAIRS times, and after
# the last time, at least COLLAPSE_MIN_SERIALIZED requests that arrived while another of its requests ran but
# began generating only after it had finished.
PARALLEL_MIN_PAIRS = 1
COLLAPSE_MIN_SERIALIZED = 3

CAPTURE_FLAGS: tuple[str, ...] = (
    FLAG_GAP_IN_CAPTURE,
    FLAG_CAPTURE_STARTED_MID_REQUEST,
    FLAG_CAPTURE_STARTED_MID_RESPONSE,
    FLAG_CAPTURE_ENDED_MID_REQUEST,
    FLAG_CAPTURE_ENDED_MID_RESPONSE,
)

Rule = Callable[[Sequence[Request]], list[Finding]]


def _ms(value: float) -> str:
    return f"{value / 1000:.1f} s" if value >= 1000 else f"{value:.0f} ms"


def _n(count: int, word: str) -> str:
    return f"{count:,} {word}" + ("" if count == 1 else "s")


def _per_model(requests: Sequence[Request]) -> str:
    counts = Counter(r.model or "?" for r in requests)
    return ", ".join(f"{model} {n}" for model, n in counts.most_common(5)) + (" …" if len(counts) > 5 else "")


# -- loads ------------------------------------------------------------------------------------------------------


def _lower_rank(values: Sequence[float], pct: float) -> float:
    """The value at or below which ``pct`` % of ``values`` lie (nearest rank, never interpolated: with a few
    requests, half of them loads, an interpolated quartile would land among the loads)."""
    ordered = sorted(values)
    return ordered[int((len(ordered) - 1) * pct / 100.0)]


class LoadJudge:
    """Which requests' load_duration means a load (or a scheduler wait): judged against the model's warm
    load_duration, else the server's, else the absolute COLD_LOAD_MS."""

    def __init__(self, requests: Sequence[Request]) -> None:
        warm_looking: dict[str, list[float]] = defaultdict(list)
        for r in requests:
            if r.inference and not r.served_remotely and r.load_ms is not None and r.load_ms < COLD_LOAD_MS:
                warm_looking[r.model].append(r.load_ms)
        # the lower quartile: robust to a warm look-up slowed by a busy machine and to up to 3 loads in 4 requests
        self.warm = {model: _lower_rank(values, WARM_LOAD_PERCENTILE) for model, values in warm_looking.items()}
        self.server_warm = min(self.warm.values(), default=None)

    def reference(self, model: str) -> float | None:
        """The warm load_duration (ms) loads of ``model`` are judged against; None when nothing looks warm."""
        return self.warm.get(model, self.server_warm)

    def threshold(self, model: str) -> float:
        reference = self.reference(model)
        if reference is None:
            return COLD_LOAD_MS
        return min(COLD_LOAD_MS, max(COLD_LOAD_MIN_MS, COLD_LOAD_RATIO * reference))

    def is_load(self, r: Request) -> bool:
        return r.inference and not r.served_remotely and r.load_ms is not None and r.load_ms >= self.threshold(r.model)


_GO_DURATION = re.compile(r"(-?\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_UNIT_S = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def keep_alive_s(value: str | None) -> float:
    """A request's keep_alive in seconds (a number of seconds or a Go duration; negative: forever); Ollama's
    default when absent or unreadable."""
    if value is None or not value.strip():
        return DEFAULT_KEEP_ALIVE_S
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        parts = _GO_DURATION.findall(text)
        if not parts or "".join(n + u for n, u in parts) != text.lstrip("+"):
            return DEFAULT_KEEP_ALIVE_S
        seconds = sum(float(n) * _UNIT_S[u] for n, u in parts)
    return float("inf") if seconds < 0 else seconds


def _load_causes(loads: Sequence[Request], requests: Sequence[Request], judge: LoadJudge) -> dict[int, str]:
    """Why each long load_duration (by ``id()``): load_duration covers loading the model *and* waiting for the
    scheduler to hand out a runner; where the records allow, tell them apart.

    ``joined``: the request arrived while another request of the same model was loading it (it waited for that
    load). ``behind_other_model``: another model was being loaded meanwhile (waiting for its load, or for the
    eviction it caused, is part of this load_duration). ``already_loaded``: the model had answered within its
    keep_alive with no other model loaded since — the time was the scheduler's, not loading. Else ``loaded``.
    """
    models = by_model(requests)
    position = {id(r): i for rows in models.values() for i, r in enumerate(rows)}
    all_loads = sorted((r for rows in models.values() for r in rows if judge.is_load(r)), key=lambda r: r.start)
    load_starts = [r.start for r in all_loads]
    causes: dict[int, str] = {}
    for r in loads:
        rows = models[r.model]
        window_end = r.start + (r.load_ms or 0.0) / 1000.0
        cause, previous = "loaded", None
        for other in reversed(rows[: position[id(r)]]):  # the same model's earlier requests, nearest first
            if other.end <= r.start:
                previous = other
                break
            if judge.is_load(other) and other.start + (other.load_ms or 0.0) / 1000.0 > r.start:
                cause = "joined"
        if cause == "loaded":
            since = previous.start if previous is not None else r.start
            other_loaded_since = False
            first, last = bisect.bisect_left(load_starts, since), bisect.bisect_right(load_starts, window_end)
            for other in all_loads[first:last]:
                if other.model == r.model:
                    continue
                if other.start < window_end and other.start + (other.load_ms or 0.0) / 1000.0 > r.start:
                    cause = "behind_other_model"
                    break
                other_loaded_since = True
            if (
                cause == "loaded"
                and previous is not None
                and not other_loaded_since
                and previous.opt_num_ctx == r.opt_num_ctx  # other options make Ollama reload the runner
                and r.start - previous.end <= keep_alive_s(previous.opt_keep_alive)
            ):
                cause = "already_loaded"
        causes[id(r)] = cause
    return causes


_CAUSE_TEXT = {
    "loaded": "loaded the model",
    "joined": "arrived during another request's load of the same model and waited for it",
    "behind_other_model": "waited while another model was being loaded (and another evicted)",
    "already_loaded": "came within the keep_alive of the model's previous answer, same num_ctx, no other model loaded "
    "since: the model was most likely still loaded and the time was the scheduler's, not loading",
}


def cold_load(requests: Sequence[Request]) -> list[Finding]:
    """Requests whose load_duration is far above their model's warm one (LoadJudge), each told apart by cause."""
    judge = LoadJudge(requests)
    hit = [r for r in requests if judge.is_load(r) and r.done_reason not in MANAGEMENT_DONE_REASONS]
    if not hit:
        return []
    loads = [r.load_ms or 0.0 for r in hit]
    causes = Counter(_load_causes(hit, requests, judge).values())
    warm = {m: judge.reference(m) for m in sorted({r.model for r in hit})}
    warm_text = ", ".join(f"{m} {_ms(v)}" if v is not None else f"{m} unknown" for m, v in warm.items())
    split = "; ".join(f"{n} {_CAUSE_TEXT[c]}" for c, n in causes.most_common())
    return [
        make_finding(
            "cold_load",
            WARNING,
            "performance",
            "Requests waited for a model to load",
            f"{_n(len(hit), 'request')} had a load_duration far above their model's warm one (≥ "
            f"{COLD_LOAD_RATIO:g}× it and ≥ {_ms(COLD_LOAD_MIN_MS)}; warm: {warm_text}): median "
            f"{_ms(statistics.median(loads))}, max {_ms(max(loads))}, {_ms(sum(loads))} in all; per model: "
            f"{_per_model(hit)}. load_duration counts loading the model and waiting for the scheduler to hand out a "
            f"runner: {split}.",
            'Keep the model resident: pass keep_alive (e.g. "30m" or -1) or set OLLAMA_KEEP_ALIVE; preload it '
            'with an empty request (`ollama run MODEL ""`) before traffic arrives.',
            hit,
            {
                "requests": len(hit),
                "median_load_ms": statistics.median(loads),
                "max_load_ms": max(loads),
                "warm_load_ms": warm,
                "causes": dict(causes),
            },
        )
    ]


def model_thrash(requests: Sequence[Request]) -> list[Finding]:
    """Reloads: a model that was loaded before, loaded again after another model's load, within its keep_alive
    (an eviction, not an expiry), at least THRASH_MIN_RELOADS times. First loads are not reloads."""
    judge = LoadJudge(requests)
    ordered = sorted((r for r in requests if r.inference), key=lambda r: r.start)
    last_use: dict[str, Request] = {}
    last_load_at: dict[str, float] = {}  # model -> start of its latest load
    reloads: list[Request] = []
    evicted_by: Counter[str] = Counter()
    for r in ordered:
        previous = last_use.get(r.model)
        if judge.is_load(r) and previous is not None:
            others = [(at, m) for m, at in last_load_at.items() if m != r.model and at >= previous.start]
            keep = keep_alive_s(previous.opt_keep_alive)
            if others and keep > 0 and r.start - previous.end <= keep:
                reloads.append(r)
                evicted_by[max(others)[1]] += 1
        if judge.is_load(r):
            last_load_at[r.model] = r.start
        last_use[r.model] = r
    causes = _load_causes(reloads, requests, judge)  # one reload per load: not those that joined it
    reloads = [r for r in reloads if causes[id(r)] in ("loaded", "behind_other_model")]
    if len(reloads) < THRASH_MIN_RELOADS:
        return []
    models = sorted({r.model for r in reloads} | set(evicted_by))
    lost = sum(r.load_ms or 0.0 for r in reloads)
    return [
        make_finding(
            "model_thrash",
            WARNING,
            "performance",
            "Models evicted each other",
            f"{_n(len(reloads), 'request')} reloaded a model that had been loaded before, after another model was "
            f"loaded in between and within its keep_alive ({', '.join(models[:5])}), {_ms(lost)} of loading in "
            f"all: the models do not stay loaded together.",
            "Raise OLLAMA_MAX_LOADED_MODELS if memory allows, use smaller/quantized models, or batch requests by "
            "model instead of alternating.",
            reloads,
            {"reloads": len(reloads), "models": models, "load_ms": lost},
        )
    ]


def queueing(requests: Sequence[Request]) -> list[Finding]:
    """Requests that began generating only after another request of the *same model*, running while they waited,
    had finished (overlap.waited_for_a_slot), with a hidden wait (not load) ≥ QUEUE_WAIT_MS and ≥
    QUEUE_WAIT_SHARE of Ollama's total."""
    behind = waited_for_a_slot(requests)
    hit = [
        r
        for r in requests
        if id(r) in behind
        and r.hidden_wait_ms is not None
        and r.total_duration_ms
        and r.hidden_wait_ms >= QUEUE_WAIT_MS
        and r.hidden_wait_ms >= QUEUE_WAIT_SHARE * r.total_duration_ms
    ]
    if not hit:
        return []
    waits = [r.hidden_wait_ms or 0.0 for r in hit]
    return [
        make_finding(
            "queueing",
            WARNING,
            "performance",
            "Requests queued for a busy model",
            f"{_n(len(hit), 'request')} began generating only after another request of the same model, running while "
            f"they waited, had finished (they waited for a free slot): hidden wait (total − load − prompt eval − eval) "
            f"median {_ms(statistics.median(waits))}, max {_ms(max(waits))}; per model: {_per_model(hit)}.",
            "Raise OLLAMA_NUM_PARALLEL (costs memory per slot), or send fewer requests at once from the clients.",
            hit,
            {"requests": len(hit), "median_wait_ms": statistics.median(waits), "max_wait_ms": max(waits)},
        )
    ]


# -- context ----------------------------------------------------------------------------------------------------


def _token_estimator(rows: Sequence[Request]) -> Callable[[int], float]:
    """Prompt characters → tokens, fitted on ``rows`` (least squares) or the typical ratio."""
    points = [(float(r.prompt_chars), float(r.prompt_eval_count or 0)) for r in rows]
    if len(points) >= CONTEXT_MIN_FIT and len({x for x, _ in points}) > 1:
        mean_x = statistics.fmean(x for x, _ in points)
        mean_y = statistics.fmean(y for _, y in points)
        spread = sum((x - mean_x) ** 2 for x, _ in points)
        slope = sum((x - mean_x) * (y - mean_y) for x, y in points) / spread
        if slope > 0:
            intercept = mean_y - slope * mean_x
            return lambda chars: intercept + slope * chars
    return lambda chars: chars / TYPICAL_CHARS_PER_TOKEN


def _pinned_at_ceiling(rows: Sequence[Request]) -> tuple[list[Request], int | None]:
    """Generate/chat requests of one model pinned at an inferred ceiling while their prompts grow."""
    ceiling = max(r.prompt_eval_count or 0 for r in rows)
    if ceiling < CONTEXT_MIN_CEILING:
        return [], None
    floor = ceiling * (1 - CONTEXT_PIN_TOLERANCE)
    pinned = [r for r in rows if (r.prompt_eval_count or 0) >= floor]
    if len(pinned) < CONTEXT_MIN_PINNED:
        return [], None
    needed = _token_estimator([r for r in rows if (r.prompt_eval_count or 0) < floor])
    cut = [r for r in pinned if needed(r.prompt_chars) >= CONTEXT_TEXT_RATIO * ceiling]
    sizes = [r.prompt_chars for r in cut]
    if len(cut) >= CONTEXT_MIN_PINNED and max(sizes) >= CONTEXT_MIN_GROWTH * min(sizes):
        return cut, ceiling
    return [], None


def _at_own_num_ctx(rows: Sequence[Request]) -> list[Request]:
    """Requests whose prompt_eval_count reached their own recorded num_ctx while the prompt needs more."""
    needed = _token_estimator([r for r in rows if r.opt_num_ctx is None or (r.prompt_eval_count or 0) < r.opt_num_ctx])
    return [
        r
        for r in rows
        if r.opt_num_ctx
        and (r.prompt_eval_count or 0) >= r.opt_num_ctx * (1 - CONTEXT_PIN_TOLERANCE)
        and needed(r.prompt_chars) >= CONTEXT_OWN_RATIO * r.opt_num_ctx
    ]


def _dropped_history(rows: Sequence[Request]) -> list[Request]:
    """Chat turns whose conversation grew while prompt_eval_count fell or stayed put (oldest messages dropped)."""
    conversations: dict[str, list[Request]] = defaultdict(list)
    for r in rows:
        if r.kind == "chat" and r.conversation and r.turns:
            conversations[r.conversation].append(r)
    hit: list[Request] = []
    for turns in conversations.values():
        dropped = []
        peak = turns[0]  # the turn with the most prompt tokens so far: growth is measured from it
        for cur in turns[1:]:
            added = (cur.prompt_chars - peak.prompt_chars) / TYPICAL_CHARS_PER_TOKEN
            grew = (cur.prompt_eval_count or 0) - (peak.prompt_eval_count or 0)
            filled = cur.opt_num_ctx is None or (cur.prompt_eval_count or 0) >= CHAT_FILL_SHARE * cur.opt_num_ctx
            if (
                cur.turns > peak.turns
                and added >= CHAT_MIN_ADDED_TOKENS
                and grew < CHAT_GROWTH_SHARE * added
                and filled
            ):
                dropped.append(cur)
            if (cur.prompt_eval_count or 0) >= (peak.prompt_eval_count or 0):
                peak = cur
        if len(dropped) >= CHAT_MIN_TURNS:
            hit.extend(dropped)
    return hit


def context_truncated(requests: Sequence[Request]) -> list[Finding]:
    """Prompts cut to the context window: counts at the request's own num_ctx, counts pinned at a model's ceiling
    while prompts grow, and conversations that grow while their prompt tokens fall or plateau."""
    grouped: dict[str, list[Request]] = defaultdict(list)
    for r in sorted(requests, key=lambda r: r.start):
        if r.inference and r.prompt_eval_count and r.prompt_chars and r.kind in ("generate", "chat"):
            grouped[r.model].append(r)
    hit: dict[int, Request] = {}
    ceilings: dict[str, int] = {}
    ways: Counter[str] = Counter()
    for model, rows in grouped.items():
        history = _dropped_history(rows)
        dropped = {id(r) for r in history}
        rows = [r for r in rows if id(r) not in dropped]  # a cut conversation says nothing of tokens per character
        own = _at_own_num_ctx(rows)
        pinned, ceiling = _pinned_at_ceiling(rows)
        for way, found in (("num_ctx", own), ("ceiling", pinned), ("history", history)):
            for r in found:
                if id(r) not in hit:
                    ways[way] += 1
                hit.setdefault(id(r), r)
        if pinned and ceiling is not None:
            ceilings[model] = ceiling
        elif own:
            ceilings[model] = max(r.opt_num_ctx or 0 for r in own)
    if not hit:
        return []
    evidence = list(hit.values())
    parts = []
    if ways["num_ctx"]:
        parts.append(f"{ways['num_ctx']} evaluated exactly their own num_ctx of a prompt that needs far more tokens")
    if ways["ceiling"]:
        parts.append(f"{ways['ceiling']} evaluated the same number of prompt tokens while their prompts grew")
    if ways["history"]:
        parts.append(f"{ways['history']} chat turns added messages while the prompt tokens fell or stayed put")
    pinned_text = ", ".join(f"{m} at {c} tokens" for m, c in sorted(ceilings.items()))
    return [
        make_finding(
            "context_truncated",
            WARNING,
            "performance",
            "Prompts were cut to fit the context window",
            f"{_n(len(evidence), 'request')}: "
            + "; ".join(parts)
            + (f" ({pinned_text})" if pinned_text else "")
            + ": Ollama silently dropped the part (or the oldest messages) that did not fit num_ctx.",
            "Raise num_ctx (request options or OLLAMA_CONTEXT_LENGTH; costs memory), or shorten the prompts / "
            "conversation history.",
            evidence,
            {"requests": len(evidence), "ceilings": ceilings, "by_evidence": dict(ways)},
        )
    ]


def length_cutoff(requests: Sequence[Request]) -> list[Finding]:
    """Responses that stopped at the token limit: done_reason (finish_reason) ``length``."""
    hit = [r for r in requests if r.done_reason == "length"]
    if not hit:
        return []
    return [
        make_finding(
            "length_cutoff",
            WARNING,
            "performance",
            "Responses stopped at the token limit",
            f'{_n(len(hit), "response")} ended with done_reason "length" (per model: {_per_model(hit)}): the answers '
            "are incomplete.",
            "Raise num_predict (native options) or max_tokens (OpenAI API), or ask for shorter answers.",
            hit,
            {"requests": len(hit)},
        )
    ]


def _prompt_evaluated_meanwhile(requests: Sequence[Request]) -> set[int]:
    """Streams (by ``id()``) during whose generation a later request of the same model had its prompt evaluated
    (its first token came meanwhile): the runner pauses every stream of its batch for that, so a long gap there is
    batching, not a stall."""
    found: set[int] = set()
    for rows in by_model(requests).values():
        for i, r in enumerate(rows):
            start = r.decode_start
            if start is None:
                continue
            for other in rows[i + 1 :]:
                if other.start >= r.end:
                    break
                if other.first_token is not None and start < other.first_token < r.end:
                    found.add(id(r))
                    break
    return found


def stall(requests: Sequence[Request]) -> list[Finding]:
    """Streams with one gap between tokens ≥ STALL_MIN_GAP_MS and ≥ STALL_GAP_RATIO × their median gap, unless
    another request of the same model had its prompt evaluated meanwhile (a batching pause)."""
    batching = _prompt_evaluated_meanwhile(requests)
    hit = [
        r
        for r in requests
        if not r.served_remotely
        and id(r) not in batching
        and r.gap_max_ms is not None
        and r.gap_p50_ms is not None
        and not r.tool_calls
        and r.gap_max_ms >= STALL_MIN_GAP_MS
        and r.gap_max_ms >= STALL_GAP_RATIO * r.gap_p50_ms
    ]
    if not hit:
        return []
    worst = max(hit, key=lambda r: r.gap_max_ms or 0.0)
    return [
        make_finding(
            "stall",
            WARNING,
            "performance",
            "Streams stalled mid-answer",
            f"{_n(len(hit), 'stream')} stopped sending tokens for ≥ {_ms(STALL_MIN_GAP_MS)} (≥ {STALL_GAP_RATIO:.0f}× "
            f"their median gap); worst {_ms(worst.gap_max_ms or 0.0)} against a median gap of "
            f"{_ms(worst.gap_p50_ms or 0.0)} ({worst.model}).",
            "Check for memory pressure (swapping, a model partly offloaded to CPU), other processes using the GPU, "
            "and a model load for another request at that moment.",
            hit,
            {"requests": len(hit), "worst_gap_ms": worst.gap_max_ms},
        )
    ]


# -- decoding ---------------------------------------------------------------------------------------------------


def parallelism_collapsed(requests: Sequence[Request]) -> list[Finding]:
    """A model whose answers were decoded together earlier and, later, with requests still overlapping, never:
    each decode waited for the previous one (Ollama dropped the model to one slot). One slot from the start is
    ordinary queueing, not this."""
    hit: list[Request] = []
    numbers: dict[str, dict[str, Any]] = {}
    for model, rows in by_model(requests).items():
        pairs = decoding_pairs(rows)
        if len(pairs) < PARALLEL_MIN_PAIRS:
            continue
        last_parallel = max(max(a.start, b.start) for a, b in pairs)
        widest = max(concurrent_decoders(rows).values())
        serialized: list[Request] = []
        running: list[Request] = []
        for r in rows:
            running = [o for o in running if o.end > r.start]
            start = r.decode_start
            if r.start > last_parallel and running and start is not None and all(start >= o.end for o in running):
                serialized.append(r)
            running.append(r)
        if len(serialized) >= COLLAPSE_MIN_SERIALIZED:
            hit.extend(serialized)
            waits = [r.hidden_wait_ms for r in serialized if r.hidden_wait_ms is not None]
            numbers[model] = {
                "parallel_decodes_before": len(pairs),
                "max_concurrent_decoders_before": widest,
                "serialized_after": len(serialized),
                "median_hidden_wait_ms": statistics.median(waits) if waits else None,
            }
    if not hit:
        return []
    text = "; ".join(
        f"{m}: {v['parallel_decodes_before']} pairs of answers decoded together earlier (up to "
        f"{v['max_concurrent_decoders_before']} at once), then {v['serialized_after']} requests that arrived while "
        f"another ran each waited for it to finish"
        + (f" (median hidden wait {_ms(float(v['median_hidden_wait_ms']))})" if v["median_hidden_wait_ms"] else "")
        for m, v in sorted(numbers.items())
    )
    return [
        make_finding(
            "parallelism_collapsed",
            WARNING,
            "performance",
            "A model stopped decoding requests in parallel",
            f"{text}: Ollama dropped the model to one slot.",
            "Check the server log for a reload with fewer parallel slots (memory pressure: Ollama lowers "
            "OLLAMA_NUM_PARALLEL when the KV cache for all slots no longer fits — its issue #17556), `ollama ps` "
            "for the model's size and processor split, and free memory (other models loaded, a larger num_ctx).",
            hit,
            {"requests": len(hit), "models": numbers},
        )
    ]


def slow_generation(requests: Sequence[Request]) -> list[Finding]:
    """Runs of ≥ SLOW_MIN_RUN requests of a model generating at ≤ SLOW_FRACTION of the median of that model's
    requests decoded with as many concurrent decoders (batched streams are compared with batched streams)."""
    hit: list[Request] = []
    medians: dict[str, dict[int, float]] = {}
    by_concurrency: dict[str, dict[int, float]] = {}
    for model, rows in by_model(requests).items():
        decoders = concurrent_decoders(rows)
        groups: dict[int, list[Request]] = defaultdict(list)
        for r in rows:
            if (r.eval_count or 0) >= SLOW_MIN_TOKENS and r.tokens_per_s:
                groups[decoders[id(r)]].append(r)
        by_concurrency[model] = {
            k: round(statistics.median(r.tokens_per_s or 0.0 for r in g), 1) for k, g in sorted(groups.items())
        }
        for k, group in groups.items():
            if len(group) < SLOW_MIN_REQUESTS:
                continue
            median = statistics.median(r.tokens_per_s or 0.0 for r in group)
            runs: list[list[Request]] = [[]]
            for row in group:
                if (row.tokens_per_s or 0.0) <= SLOW_FRACTION * median:
                    runs[-1].append(row)
                elif runs[-1]:
                    runs.append([])
            for run in runs:
                if len(run) >= SLOW_MIN_RUN:
                    hit.extend(run)
                    medians.setdefault(model, {})[k] = median
    if not hit:
        return []
    rates = [r.tokens_per_s or 0.0 for r in hit]
    usual = ", ".join(
        f"{m} {v:.1f} tok/s" + ("" if k == 1 else f" with {k} answers decoded together")
        for m, per in sorted(medians.items())
        for k, v in sorted(per.items())
    )
    batching = "; ".join(
        f"{m}: " + ", ".join(f"{k} at once {v:g} tok/s each" for k, v in per.items())
        for m, per in sorted(by_concurrency.items())
        if m in medians and len(per) > 1
    )
    return [
        make_finding(
            "slow_generation",
            WARNING,
            "performance",
            "Generation slowed down for a while",
            f"{_n(len(hit), 'consecutive request')} generated at ≤ {SLOW_FRACTION:.0%} of the model's median rate "
            f"with the same number of answers decoded together (median of the slow ones "
            f"{statistics.median(rates):.1f} tok/s; usual: {usual})."
            + (
                f" Batching alone (OLLAMA_NUM_PARALLEL: answers decoded together share the runner) is compared "
                f"only with itself: {batching}."
                if batching
                else ""
            ),
            "Look for CPU fallback (a model not fully on the GPU: `ollama ps`), thermal throttling, or other load "
            "on the machine during that period.",
            hit,
            {
                "requests": len(hit),
                "median_tokens_per_s": {m: per for m, per in medians.items()},
                "tokens_per_s_by_concurrent_decoders": {m: by_concurrency[m] for m in medians},
            },
        )
    ]


_ERROR_TEXT: dict[str, tuple[str, str, str]] = {
    errors.MODEL_NOT_FOUND: (
        WARNING,
        "Requests named a model the server does not have",
        "Pull the model (`ollama pull NAME`) or fix the model name in the client (check `ollama list`).",
    ),
    errors.OUT_OF_MEMORY: (
        ERROR,
        "The model did not fit in memory",
        "Use a smaller or more quantized model, lower num_ctx, unload other models (OLLAMA_MAX_LOADED_MODELS=1), "
        "or free GPU/system memory.",
    ),
    errors.CONTEXT_EXCEEDED: (
        WARNING,
        "Inputs exceeded the context length",
        "Raise num_ctx, or shorten/split the input (embedding inputs are not truncated when truncate=false).",
    ),
    errors.SERVER_BUSY: (
        WARNING,
        "Ollama turned requests away: server busy",
        "More requests waited for a runner (a load or an eviction) than OLLAMA_MAX_QUEUE allows (default 512): raise "
        "it, keep models loaded (keep_alive) so requests do not queue behind loads, or send fewer at once.",
    ),
    errors.SERVER_ERROR: (
        ERROR,
        "Ollama answered with a server error",
        "Read Ollama's server log (`journalctl -u ollama` or ~/.ollama/logs/server.log) at these times.",
    ),
    errors.BAD_REQUEST: (
        WARNING,
        "Ollama rejected requests",
        "Fix the requests the clients send (see the error messages).",
    ),
    errors.ERROR_MID_STREAM: (
        ERROR,
        "Streams ended with an error after starting",
        "Read Ollama's server log at these times: the runner failed while generating (often memory).",
    ),
    errors.UPSTREAM_FAILED: (
        ERROR,
        "Ollama could not be reached or hung up",
        "Check that Ollama was running (a crash or restart shows here) and that the proxy points at it.",
    ),
    errors.CLIENT_ABORTED: (
        INFO,
        "Clients hung up before the answer ended",
        "Usually a user pressing stop or a client timeout: raise the client's timeout if the answers were slow.",
    ),
}


def error_findings(requests: Sequence[Request]) -> list[Finding]:
    """One finding per error category that occurred (code = the category)."""
    by_category: dict[str, list[Request]] = defaultdict(list)
    for r in requests:
        category = r.category
        if category:
            by_category[category].append(r)
    found = []
    for category in errors.CATEGORIES:
        hit = by_category.get(category)
        if not hit:
            continue
        severity, title, suggestion = _ERROR_TEXT[category]
        messages = Counter((r.error or (f"HTTP {r.status}" if r.status else category)) for r in hit)
        common = "; ".join(f"{n}× {message[:120]!r}" for message, n in messages.most_common(3))
        found.append(
            make_finding(
                category,
                severity,
                "errors",
                title,
                f"{_n(len(hit), 'request')} ({_per_model(hit)}): {common}.",
                suggestion,
                hit,
                {"requests": len(hit)},
            )
        )
    return found


def capture_loss(requests: Sequence[Request]) -> list[Finding]:
    """Records a packet capture lost bytes of, or cut at its window's edges."""
    hit = [r for r in requests if any(flag in CAPTURE_FLAGS for flag in r.flags)]
    if not hit:
        return []
    counts = Counter(flag for r in hit for flag in r.flags if flag in CAPTURE_FLAGS)
    gaps = counts.get(FLAG_GAP_IN_CAPTURE, 0)
    return [
        make_finding(
            "capture_loss",
            WARNING if gaps else INFO,
            "capture",
            "The capture missed part of some exchanges",
            f"{_n(len(hit), 'record')} are incomplete because of the capture: "
            + ", ".join(f"{flag} {n}" for flag, n in counts.most_common())
            + ". Their text and timings are partial.",
            "Capture with a larger buffer (tcpdump -B 8192) and --immediate-mode, on the loopback interface rather "
            "than -i any, and with windows long enough to hold whole answers.",
            hit,
            {"requests": len(hit), "flags": dict(counts)},
        )
    ]


RULES: tuple[Rule, ...] = (
    error_findings,
    cold_load,
    model_thrash,
    queueing,
    parallelism_collapsed,
    context_truncated,
    length_cutoff,
    stall,
    slow_generation,
    long_thinking,
    capture_loss,
)


def find(requests: Sequence[Request]) -> list[Finding]:
    """Every finding the requests show, errors first, then warnings, then information."""
    found = [finding for rule in RULES for finding in rule(requests)]
    return sorted(found, key=lambda f: SEVERITY_ORDER[f.severity])
