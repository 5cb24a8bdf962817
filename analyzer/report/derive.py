"""Derived timings: what the record's own columns imply but Ollama never reports.

``hidden_wait_ms`` is :func:`analyzer.protocol.durations.hidden_wait_ms` (one definition, per endpoint): Ollama
takes ``load_duration`` from the handler's start to the moment the scheduler hands out a runner, and
``total_duration`` from the handler's start to the final object. Waiting for a free slot of a busy runner
(``OLLAMA_NUM_PARALLEL``) happens after that hand-out and before prompt evaluation, so it is in neither load
nor prompt evaluation: it is the bulk of the hidden wait. Prompt templating, tokenizing (and truncation) and the
hop to the runner fall there too — a few milliseconds when nothing queues.

``wire_overhead_ms = total_ms − total_duration_ms``: what the network, the proxy, the client's reading and
Ollama's HTTP handling before and after its own clock add. See docs/record.md ("Derived timings").
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from analyzer.protocol.durations import hidden_wait_ms
from analyzer.protocol.record import FLAG_REMOTE_MODEL, RESOURCE_COLUMNS, InteractionRecord
from analyzer.report.errors import error_category

INFERENCE_KINDS = frozenset({"generate", "chat", "embed", "embeddings"})
PREVIEW_CHARS = 100


def wire_overhead_ms(record: InteractionRecord | Any) -> float | None:
    """Wire total minus Ollama's total (≥ 0); None unless both are known."""
    if record.total_ms is None or record.total_duration_ms is None:
        return None
    return max(0.0, record.total_ms - record.total_duration_ms)


def prompt_chars(record: InteractionRecord | Any) -> int:
    """Characters of input text the model was given: the chat messages' text (else the prompt) plus the system."""
    if record.messages:
        total = 0
        for message in record.messages:
            content = message.get("content") if isinstance(message, dict) else getattr(message, "content", None)
            if isinstance(content, str):
                total += len(content)
            elif isinstance(content, list):  # OpenAI content parts
                total += sum(len(p.get("text") or "") for p in content if isinstance(p, dict))
        return total
    return len(record.prompt or "") + len(record.system or "")


def _role_and_text(message: Any) -> tuple[str, str]:
    if not isinstance(message, dict):
        return "", ""
    content = message.get("content")
    if not isinstance(content, str):
        content = json.dumps(content, ensure_ascii=False, sort_keys=True, default=str)
    return str(message.get("role") or ""), content


def conversation(record: InteractionRecord | Any) -> tuple[str | None, int]:
    """A chat's conversation key and its number of messages: requests whose first non-system message is the same
    (same role and text) for the same model continue one conversation. (None, 0) for a request without messages."""
    messages = [m for m in (record.messages or []) if _role_and_text(m)[0] not in ("system", "developer")]
    if not messages:
        return None, 0
    role, text = _role_and_text(messages[0])
    digest = hashlib.blake2b(f"{record.model}\0{role}\0{text}".encode(), digest_size=8).hexdigest()
    return digest, len(messages)


def epoch_seconds(started_at: str | None) -> float | None:
    """``started_at`` as POSIX seconds (UTC unless it says otherwise, as ``--since``); None when unreadable."""
    try:
        when = datetime.fromisoformat(started_at)  # type: ignore[arg-type]  # Python ≥ 3.11 reads a trailing "Z"
    except (ValueError, TypeError):
        return None
    return (when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp()


def preview(text: str | None, limit: int = PREVIEW_CHARS) -> str:
    """The first ``limit`` characters of a prompt on one line."""
    if not text:
        return ""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


@dataclass(slots=True)
class Request:
    """One record reduced to what the report needs, with absolute times (POSIX seconds)."""

    id: str
    api: str
    start: float
    end: float
    first_token: float | None
    model: str
    kind: str
    status: int | None
    stream: bool | None
    done_reason: str | None
    error: str | None
    flags: tuple[str, ...]
    prompt: str
    ttft_ms: float | None
    total_ms: float | None
    eval_count: int | None
    prompt_eval_count: int | None
    request_bytes: int
    prompt_chars: int
    tool_calls: bool  # the response called tools (Ollama holds back tool-call tokens until a call is parsed)
    category: str | None  # errors.error_category
    inference: bool  # a generate/chat/embed request of a model: one the scheduler runs
    load_ms: float | None
    prompt_eval_ms: float | None
    eval_ms: float | None
    total_duration_ms: float | None
    hidden_wait_ms: float | None
    wire_overhead_ms: float | None
    wire_tokens_per_s: float | None
    eval_tokens_per_s: float | None
    gap_p50_ms: float | None
    gap_max_ms: float | None
    started_at: str
    gpu_util_mean_pct: float | None = None
    gpu_mem_max_mb: float | None = None
    power_mean_w: float | None = None
    energy_j: float | None = None
    joules_per_token: float | None = None
    server_cpu_ms: float | None = None
    server_rss_max_mb: float | None = None
    energy_source: str | None = None
    gpu_mem_source: str | None = None
    opt_num_ctx: int | None = None  # the request's own options.num_ctx, when recorded
    opt_keep_alive: str | None = None
    remote: bool = False  # served by a remote (cloud) model: its time is not the local machine's
    conversation: str | None = None  # derive.conversation: chats continuing one conversation share it
    turns: int = 0  # the conversation's non-system messages in this request

    @property
    def decode_start(self) -> float | None:
        """When the model started generating this answer (POSIX s): the first token of a stream, else the end minus
        Ollama's eval_duration; None when neither is known."""
        if self.stream and self.first_token is not None:
            return self.first_token
        if self.eval_ms is not None:
            return max(self.start, self.end - self.eval_ms / 1000.0)
        return self.first_token

    @property
    def sampled(self) -> bool:
        """A machine sampler covered this request (it has at least one resource column)."""
        return any(getattr(self, name) is not None for name in RESOURCE_COLUMNS)

    @property
    def tokens_per_s(self) -> float | None:
        """Ollama's own generation rate, else the rate the client saw."""
        return self.eval_tokens_per_s if self.eval_tokens_per_s is not None else self.wire_tokens_per_s


def to_request(record: InteractionRecord | Any) -> Request | None:
    """The report's view of ``record`` (an InteractionRecord or anything with its column names, like
    ``load.ReportColumns``); None when its ``started_at`` is unreadable."""
    start = epoch_seconds(record.started_at)
    if start is None:
        return None
    total = record.total_ms
    flags = tuple(str(flag) for flag in record.flags or ())
    key, turns = conversation(record)
    return Request(
        id=record.id or "",
        api=getattr(record, "api", None) or "",
        start=start,
        end=start + (total or 0.0) / 1000.0,
        first_token=None if record.ttft_ms is None else start + record.ttft_ms / 1000.0,
        model=record.model or "",
        kind=record.kind or "",
        status=record.status,
        stream=record.stream,
        done_reason=record.done_reason,
        error=record.error,
        flags=flags,
        prompt=preview(record.prompt),
        ttft_ms=record.ttft_ms,
        total_ms=total,
        eval_count=record.eval_count,
        prompt_eval_count=record.prompt_eval_count,
        request_bytes=record.request_bytes or 0,
        prompt_chars=prompt_chars(record),
        tool_calls=bool(record.tool_calls),
        category=error_category(record.status, record.error, flags),
        inference=(record.kind or "") in INFERENCE_KINDS and bool(record.model),
        load_ms=record.load_duration_ms,
        prompt_eval_ms=record.prompt_eval_duration_ms,
        eval_ms=record.eval_duration_ms,
        total_duration_ms=record.total_duration_ms,
        hidden_wait_ms=hidden_wait_ms(record),
        wire_overhead_ms=wire_overhead_ms(record),
        wire_tokens_per_s=record.wire_tokens_per_s,
        eval_tokens_per_s=record.eval_tokens_per_s,
        gap_p50_ms=record.gap_p50_ms,
        gap_max_ms=record.gap_max_ms,
        started_at=record.started_at,
        gpu_util_mean_pct=record.gpu_util_mean_pct,
        gpu_mem_max_mb=record.gpu_mem_max_mb,
        power_mean_w=record.power_mean_w,
        energy_j=record.energy_j,
        joules_per_token=record.joules_per_token,
        server_cpu_ms=record.server_cpu_ms,
        server_rss_max_mb=record.server_rss_max_mb,
        energy_source=record.energy_source,
        gpu_mem_source=record.gpu_mem_source,
        opt_num_ctx=record.opt_num_ctx,
        opt_keep_alive=record.opt_keep_alive,
        remote=bool(getattr(record, "remote", None)) or FLAG_REMOTE_MODEL in flags,
        conversation=key,
        turns=turns,
    )
