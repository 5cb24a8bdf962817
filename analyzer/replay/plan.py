"""What a replay sends: the recorded requests that may be sent again, their bodies and their arrival pattern.

Only inference and read-only requests are ever replayed (``replayable``): a replay must never pull, push, create,
copy or delete a model on the target. A request is sent with the body the record kept (``request_body``); a record
without one cannot be replayed and is counted, never sent altered — except by the user's own ``--model-map``.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from analyzer.protocol.record import FLAG_REDACTED, InteractionRecord
from analyzer.protocol.redact import has_image_placeholder
from analyzer.report.derive import epoch_seconds
from analyzer.store.select import counts_as_traffic

# Kinds a replay may send: inference (it is what a replay measures) — with the empty-prompt generate/chat that
# load or unload a model (``load``/``unload``: they shape what the scheduler does next) — and read-only look-ups.
# A new inference API is replayable as soon as the recorder gives its records one of these kinds.
INFERENCE_KINDS = frozenset({"generate", "chat", "embed", "embeddings", "messages", "responses", "load", "unload"})
READ_ONLY_KINDS = frozenset({"tags", "ps", "show", "version", "models", "root", "status"})
BODILESS_METHODS = frozenset({"GET", "HEAD"})
# ``--option``: native request fields Ollama reads at the top level rather than in ``options``, and the OpenAI
# names of native options.
NATIVE_TOP_LEVEL = frozenset({"keep_alive", "think", "format", "truncate", "shift", "logprobs", "top_logprobs"})
OPENAI_OPTION_NAMES = {"num_predict": "max_tokens"}

# Why a record was not replayed (the dry run and the summary count each).
SKIP_NOT_REPLAYABLE = "model management or not an Ollama API call (never replayed)"
SKIP_REDACTED = "recorded with ollama_redact=hash or drop: no request body kept"
SKIP_IMAGES = "images replaced by the default images redaction (would be sent altered)"
SKIP_NO_BODY = "no request body kept (cut at the size cap, partly captured, or an older log)"
SKIP_NO_START = "no readable started_at"
SKIP_REPLAY = "itself a replay (--include-replays to send it again)"


def replayable(kind: str, method: str) -> bool:
    """Whether a request of this endpoint kind and method may be sent to a target: inference, or read-only."""
    if kind in INFERENCE_KINDS:
        return method == "POST"
    if kind in READ_ONLY_KINDS:
        return method in BODILESS_METHODS or (kind == "show" and method == "POST")
    return False


@dataclass(frozen=True)
class PlannedRequest:
    """One request to send: ``offset_s`` after the first one at speed 1."""

    original_id: str
    offset_s: float
    duration_s: float  # how long the original took (total_ms), 0 when unknown
    method: str
    path: str
    body: bytes
    content_type: str | None
    model: str
    kind: str


@dataclass
class ReplayPlan:
    """The requests to send (oldest first) and what was left out, by reason."""

    requests: list[PlannedRequest] = field(default_factory=list)
    skipped: Counter[str] = field(default_factory=Counter)

    @property
    def recorded_span_s(self) -> float:
        """From the first start to the last end in the recording."""
        if not self.requests:
            return 0.0
        return max(r.offset_s + r.duration_s for r in self.requests)

    def recorded_concurrency(self) -> int:
        """The most requests that were in flight at once in the recording (at least 1)."""
        events = sorted(
            [(r.offset_s, 1) for r in self.requests] + [(r.offset_s + r.duration_s, -1) for r in self.requests],
            key=lambda e: (e[0], e[1]),
        )
        peak = running = 0
        for _, step in events:
            running += step
            peak = max(peak, running)
        return max(peak, 1)

    def counts(self) -> list[tuple[str, str, int]]:
        """(model, "METHOD path", requests) for the dry run, most first."""
        counted = Counter((r.model or "-", f"{r.method} {r.path}") for r in self.requests)
        return [(model, endpoint, n) for (model, endpoint), n in counted.most_common()]


def parse_model_map(values: Iterable[str]) -> dict[str, str]:
    """``OLD=NEW`` pairs → a mapping; ValueError naming a malformed one."""
    mapping: dict[str, str] = {}
    for value in values:
        old, sep, new = value.partition("=")
        if not sep or not old.strip() or not new.strip():
            raise ValueError(f"--model-map {value!r}: expected OLD=NEW")
        mapping[old.strip()] = new.strip()
    return mapping


def parse_options(values: Iterable[str]) -> dict[str, Any]:
    """``NAME=VALUE`` request options → a mapping (VALUE read as JSON when it is: ``8192``, ``true``, ``"30m"``,
    else as text); ValueError naming a malformed one."""
    options: dict[str, Any] = {}
    for value in values:
        name, sep, raw = value.partition("=")
        if not sep or not name.strip():
            raise ValueError(f"--option {value!r}: expected NAME=VALUE, e.g. num_ctx=8192")
        try:
            options[name.strip()] = json.loads(raw)
        except ValueError:
            options[name.strip()] = raw
    return options


def _set_option(data: dict[str, Any], path: str, name: str, value: Any) -> None:
    """Set one request option where each API reads it: OpenAI's at the top level (``num_predict`` is its
    ``max_tokens``), native ones in ``options`` unless Ollama reads them at the top level (``keep_alive``, …)."""
    if path.startswith("/v1/"):
        data[OPENAI_OPTION_NAMES.get(name, name)] = value
    elif name in NATIVE_TOP_LEVEL:
        data[name] = value
    else:
        options = data.get("options")
        if not isinstance(options, dict):
            options = data["options"] = {}
        options[name] = value


def _rewritten_body(
    body: str, path: str, mapping: Mapping[str, str], options: Mapping[str, Any]
) -> tuple[str, str | None]:
    """The body with its ``model`` renamed per ``mapping`` and ``options`` set, and the new model name (None when
    not renamed). Re-written as compact JSON only when something changed: otherwise the bytes as recorded."""
    if not mapping and not options:
        return body, None
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        return body, None
    if not isinstance(data, dict):
        return body, None
    key = "model" if "model" in data else "name" if "name" in data else None
    old = data.get(key) if key else None
    renamed = mapping.get(old) if isinstance(old, str) else None
    if renamed is not None and key is not None:
        data[key] = renamed
    for name, value in options.items():
        _set_option(data, path, name, value)
    if renamed is None and not options:
        return body, None
    return json.dumps(data, ensure_ascii=False, separators=(",", ":")), renamed


def skip_reason(record: InteractionRecord, include_replays: bool = False) -> str | None:
    """Why ``record`` cannot be replayed, or None when it can."""
    if not counts_as_traffic(record.source, include_replays):
        return SKIP_REPLAY
    if not replayable(record.kind, record.method):
        return SKIP_NOT_REPLAYABLE
    if epoch_seconds(record.started_at) is None:
        return SKIP_NO_START
    if record.method in BODILESS_METHODS:
        return None
    if record.request_body is None:
        return SKIP_REDACTED if FLAG_REDACTED in record.flags else SKIP_NO_BODY
    if has_image_placeholder(record.request_body):
        return SKIP_IMAGES
    return None


def build_plan(
    records: Sequence[InteractionRecord],
    *,
    model_map: Mapping[str, str] | None = None,
    options: Mapping[str, Any] | None = None,
    limit: int | None = None,
    include_replays: bool = False,
) -> ReplayPlan:
    """The plan for ``records`` (any order): the replayable ones oldest first, at most ``limit``; bodies with
    models renamed per ``model_map`` and request ``options`` set (inference requests only)."""
    plan = ReplayPlan()
    chosen: list[tuple[float, InteractionRecord]] = []
    for record in records:
        reason = skip_reason(record, include_replays)
        if reason is not None:
            plan.skipped[reason] += 1
            continue
        chosen.append((epoch_seconds(record.started_at) or 0.0, record))
    chosen.sort(key=lambda item: item[0])
    if limit is not None:
        chosen = chosen[:limit]
    if not chosen:
        return plan
    first = chosen[0][0]
    for start, record in chosen:
        body_text = record.request_body or ""
        model = record.model or ""
        settings = (options or {}) if record.kind in INFERENCE_KINDS else {}
        body_text, renamed = _rewritten_body(body_text, record.path, model_map or {}, settings)
        plan.requests.append(
            PlannedRequest(
                original_id=record.id,
                offset_s=start - first,
                duration_s=(record.total_ms or 0.0) / 1000.0,
                method=record.method,
                path=record.path,
                body=body_text.encode("utf-8"),
                content_type=record.request_content_type,
                model=renamed or model,
                kind=record.kind,
            )
        )
    return plan


def nothing_to_replay(plan: ReplayPlan, sources: Sequence[str]) -> str:
    """The one line saying why a plan is empty (naming the sources and, for redaction, the option)."""
    where = ", ".join(sources) or "the log"
    if not plan.skipped:
        return f"{where}: no recorded requests in the chosen period (see --since/--until/--model)"
    reason, _ = plan.skipped.most_common(1)[0]
    if reason == SKIP_REDACTED:
        return (
            f"{where}: cannot replay: recorded with redaction hash or drop (addon option ollama_redact, "
            "analyze-pcap --redact), which keeps no request body; record with ollama_redact=images (the default) "
            "or none to be able to replay"
        )
    details = "; ".join(f"{n} {why}" for why, n in plan.skipped.most_common())
    return f"{where}: nothing to replay: {details}"
