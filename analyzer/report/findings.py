"""The findings engine: each rule reads the requests and returns a finding only when records show it.

Codes are stable (scripts and tests rely on them); docs/report.md describes each with its thresholds, which are
the named constants below.
"""

from __future__ import annotations

import statistics
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence

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
from analyzer.report.thinking import long_thinking

# cold_load: Ollama's load_duration at or above this (ms) means the model was loaded for the request
# (or the request waited for the scheduler to free a runner for it).
COLD_LOAD_MS = 1000.0
# model_thrash: at least this many switches to another model, each paying a cold load.
THRASH_MIN_SWITCHES = 3
# queueing: a request overlapping another whose hidden wait is at least this (ms) and this share of its total.
QUEUE_WAIT_MS = 500.0
QUEUE_WAIT_SHARE = 0.25
# context_truncated: at least CONTEXT_MIN_PINNED generate/chat requests of a model whose prompt_eval_count sits
# within CONTEXT_PIN_TOLERANCE of the model's highest count (at least CONTEXT_MIN_CEILING tokens), whose prompts
# would need at least CONTEXT_TEXT_RATIO times that many tokens, and whose prompt sizes differ by at least
# CONTEXT_MIN_GROWTH. Tokens a prompt needs: a straight line (tokens = a + b × characters) fitted to the model's
# other requests when at least CONTEXT_MIN_FIT of them with different sizes exist, else characters /
# TYPICAL_CHARS_PER_TOKEN.
CONTEXT_MIN_PINNED = 3
CONTEXT_PIN_TOLERANCE = 0.01
CONTEXT_MIN_CEILING = 32
CONTEXT_TEXT_RATIO = 1.5
CONTEXT_MIN_GROWTH = 1.1
CONTEXT_MIN_FIT = 5
TYPICAL_CHARS_PER_TOKEN = 4.0
# stall: a gap between tokens at least this long (ms) and this many times the stream's median gap. Responses with
# tool calls are left out: Ollama sends nothing while the model writes a call, until the call is parsed.
STALL_MIN_GAP_MS = 1000.0
STALL_GAP_RATIO = 20.0
# slow_generation: a run of at least this many consecutive requests of a model (each with at least
# SLOW_MIN_TOKENS generated) whose tokens/s is at most this fraction of the model's median, when the model has
# at least SLOW_MIN_REQUESTS such requests.
SLOW_FRACTION = 0.5
SLOW_MIN_RUN = 3
SLOW_MIN_TOKENS = 8
SLOW_MIN_REQUESTS = 6

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


def cold_load(requests: Sequence[Request]) -> list[Finding]:
    """Requests whose model had to be loaded: Ollama's load_duration ≥ COLD_LOAD_MS."""
    hit = [r for r in requests if r.load_ms is not None and r.load_ms >= COLD_LOAD_MS]
    if not hit:
        return []
    loads = [r.load_ms or 0.0 for r in hit]
    return [
        make_finding(
            "cold_load",
            WARNING,
            "performance",
            "Requests waited for a model to load",
            f"{_n(len(hit), 'request')} had load_duration ≥ {_ms(COLD_LOAD_MS)} "
            f"(median {_ms(statistics.median(loads))}, max {_ms(max(loads))}, {_ms(sum(loads))} in all); "
            f"per model: {_per_model(hit)}.",
            'Keep the model resident: pass keep_alive (e.g. "30m" or -1) or set OLLAMA_KEEP_ALIVE; preload it '
            'with an empty request (`ollama run MODEL ""`) before traffic arrives.',
            hit,
            {"requests": len(hit), "median_load_ms": statistics.median(loads), "max_load_ms": max(loads)},
        )
    ]


def model_thrash(requests: Sequence[Request]) -> list[Finding]:
    """Switches between models where the new model paid a cold load, at least THRASH_MIN_SWITCHES times."""
    switches: list[Request] = []
    previous: str | None = None
    for r in sorted((r for r in requests if r.inference), key=lambda r: r.start):
        if previous is not None and r.model != previous and r.load_ms is not None and r.load_ms >= COLD_LOAD_MS:
            switches.append(r)
        previous = r.model
    if len(switches) < THRASH_MIN_SWITCHES:
        return []
    models = sorted({r.model for r in switches})
    lost = sum(r.load_ms or 0.0 for r in switches)
    return [
        make_finding(
            "model_thrash",
            WARNING,
            "performance",
            "Models evicted each other",
            f"{len(switches)} switches between {len(models)} models ({', '.join(models[:5])}) each reloaded the "
            f"model, {_ms(lost)} of loading in all: the models do not stay loaded together.",
            "Raise OLLAMA_MAX_LOADED_MODELS if memory allows, use smaller/quantized models, or batch requests by "
            "model instead of alternating.",
            switches,
            {"switches": len(switches), "models": models, "load_ms": lost},
        )
    ]


def _overlapping(requests: Sequence[Request]) -> set[int]:
    """The requests (by ``id()``: record ids may be missing) whose [start, end] overlaps another request's."""
    ordered = sorted(requests, key=lambda r: r.start)
    found: set[int] = set()
    latest_end, latest = float("-inf"), 0
    for r in ordered:
        if r.start < latest_end:
            found.update((id(r), latest))
        if r.end > latest_end:
            latest_end, latest = r.end, id(r)
    return found


def queueing(requests: Sequence[Request]) -> list[Finding]:
    """Concurrent requests that waited for a slot: hidden wait ≥ QUEUE_WAIT_MS and ≥ QUEUE_WAIT_SHARE of total."""
    overlapping = _overlapping([r for r in requests if r.inference])
    hit = [
        r
        for r in requests
        if id(r) in overlapping
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
            f"{_n(len(hit), 'overlapping request')} waited for a free slot: hidden wait (total − load − prompt eval − "
            f"eval) median {_ms(statistics.median(waits))}, max {_ms(max(waits))}; per model: {_per_model(hit)}.",
            "Raise OLLAMA_NUM_PARALLEL (costs memory per slot), or send fewer requests at once from the clients.",
            hit,
            {"requests": len(hit), "median_wait_ms": statistics.median(waits), "max_wait_ms": max(waits)},
        )
    ]


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


def context_truncated(requests: Sequence[Request]) -> list[Finding]:
    """prompt_eval_count pinned at a model's ceiling while the prompts need far more tokens than that, and grow."""
    by_model: dict[str, list[Request]] = defaultdict(list)
    for r in requests:
        if r.inference and r.prompt_eval_count and r.prompt_chars and r.kind in ("generate", "chat"):
            by_model[r.model].append(r)
    hit: list[Request] = []
    ceilings: dict[str, int] = {}
    for model, rows in by_model.items():
        ceiling = max(r.prompt_eval_count or 0 for r in rows)
        if ceiling < CONTEXT_MIN_CEILING:
            continue
        floor = ceiling * (1 - CONTEXT_PIN_TOLERANCE)
        pinned = [r for r in rows if (r.prompt_eval_count or 0) >= floor]
        if len(pinned) < CONTEXT_MIN_PINNED:
            continue
        needed = _token_estimator([r for r in rows if (r.prompt_eval_count or 0) < floor])
        cut = [r for r in pinned if needed(r.prompt_chars) >= CONTEXT_TEXT_RATIO * ceiling]
        sizes = [r.prompt_chars for r in cut]
        if len(cut) >= CONTEXT_MIN_PINNED and max(sizes) >= CONTEXT_MIN_GROWTH * min(sizes):
            hit.extend(cut)
            ceilings[model] = ceiling
    if not hit:
        return []
    pinned_text = ", ".join(f"{m} at {c} tokens" for m, c in sorted(ceilings.items()))
    return [
        make_finding(
            "context_truncated",
            WARNING,
            "performance",
            "Prompts were cut to fit the context window",
            f"{_n(len(hit), 'request')} evaluated the same number of prompt tokens while their prompts grew "
            f"({pinned_text}): Ollama silently dropped the part that did not fit num_ctx.",
            "Raise num_ctx (request options or OLLAMA_CONTEXT_LENGTH; costs memory), or shorten the prompts / "
            "conversation history.",
            hit,
            {"requests": len(hit), "ceilings": ceilings},
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


def stall(requests: Sequence[Request]) -> list[Finding]:
    """Streams with one gap between tokens ≥ STALL_MIN_GAP_MS and ≥ STALL_GAP_RATIO × their median gap."""
    hit = [
        r
        for r in requests
        if r.gap_max_ms is not None
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


def slow_generation(requests: Sequence[Request]) -> list[Finding]:
    """Runs of ≥ SLOW_MIN_RUN requests of a model generating at ≤ SLOW_FRACTION of its median tokens/s."""
    by_model: dict[str, list[Request]] = defaultdict(list)
    for r in sorted(requests, key=lambda r: r.start):
        if r.inference and (r.eval_count or 0) >= SLOW_MIN_TOKENS and r.tokens_per_s:
            by_model[r.model].append(r)
    hit: list[Request] = []
    medians: dict[str, float] = {}
    for model, rows in by_model.items():
        if len(rows) < SLOW_MIN_REQUESTS:
            continue
        median = statistics.median(r.tokens_per_s or 0.0 for r in rows)
        runs: list[list[Request]] = [[]]
        for row in rows:
            if (row.tokens_per_s or 0.0) <= SLOW_FRACTION * median:
                runs[-1].append(row)
            elif runs[-1]:
                runs.append([])
        for run in runs:
            if len(run) >= SLOW_MIN_RUN:
                hit.extend(run)
                medians[model] = median
    if not hit:
        return []
    rates = [r.tokens_per_s or 0.0 for r in hit]
    usual = ", ".join(f"{m} {v:.1f} tok/s" for m, v in sorted(medians.items()))
    return [
        make_finding(
            "slow_generation",
            WARNING,
            "performance",
            "Generation slowed down for a while",
            f"{_n(len(hit), 'consecutive request')} generated at ≤ {SLOW_FRACTION:.0%} of the model's median rate "
            f"(median of the slow ones {statistics.median(rates):.1f} tok/s; usual: {usual}).",
            "Look for CPU fallback (a model not fully on the GPU: `ollama ps`), thermal throttling, or other load "
            "on the machine during that period.",
            hit,
            {"requests": len(hit), "median_tokens_per_s": medians},
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
