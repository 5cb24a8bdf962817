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
from dataclasses import dataclass, make_dataclass
from dataclasses import fields as dataclass_fields
from datetime import UTC, datetime
from operator import attrgetter
from typing import TYPE_CHECKING, Any

from analyzer.protocol.durations import hidden_wait_ms
from analyzer.protocol.record import (
    FLAG_REMOTE_MODEL,
    REPORT,
    RESOURCE_COLUMNS,
    Column,
    InteractionRecord,
    columns_in,
)
from analyzer.report.errors import error_category

# Requests the local scheduler runs a model for (Anthropic `messages` and OpenAI `responses` are chats too).
INFERENCE_KINDS = frozenset({"generate", "chat", "embed", "embeddings", "messages", "responses"})
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
class DerivedColumns:
    """What the report computes from a record (absolute times in POSIX seconds, the prompt's preview, ...).

    A :data:`Request` has these and, as they are, the record columns the schema's ``report`` view names
    (:data:`CARRIED`): adding a column to that view puts it on every request."""

    id: str
    start: float
    end: float
    first_token: float | None
    model: str
    kind: str
    flags: tuple[str, ...]
    prompt: str  # a one-line preview
    request_bytes: int
    prompt_chars: int
    tool_calls: bool  # the response called tools (Ollama holds back tool-call tokens until a call is parsed)
    category: str | None  # errors.error_category
    inference: bool  # a generate/chat/embed request of a local model: one the local scheduler runs
    load_ms: float | None
    prompt_eval_ms: float | None
    eval_ms: float | None
    hidden_wait_ms: float | None
    wire_overhead_ms: float | None
    served_remotely: bool  # a remote (cloud) model (column remote or flag remote_model): not this machine's time
    conversation: str | None  # derive.conversation: chats continuing one conversation share it
    turns: int  # the conversation's non-system messages in this request

    @property
    def decode_start(self) -> float | None:
        """When the model started generating this answer (POSIX s): the first token of a stream, else the end minus
        Ollama's eval_duration; None when neither is known."""
        stream: bool | None = getattr(self, "stream")  # noqa: B009  (a carried column)
        if stream and self.first_token is not None:
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
        rate: float | None = getattr(self, "eval_tokens_per_s")  # noqa: B009  (a carried column)
        return rate if rate is not None else getattr(self, "wire_tokens_per_s")  # noqa: B009


# Columns the formulas read but a request does not keep: whole texts (a request keeps counts and a preview).
_READ_ONLY = frozenset({"system", "messages"})
CARRIED: tuple[Column, ...] = tuple(
    c for c in columns_in(REPORT) if c.name not in _READ_ONLY and c.name not in DerivedColumns.__dataclass_fields__
)
"""The record columns every request carries as they are, in record order."""

if TYPE_CHECKING:

    class Request(DerivedColumns):
        """One record reduced to what the report needs: :class:`DerivedColumns` plus :data:`CARRIED`."""

        def __getattr__(self, name: str) -> Any: ...  # the CARRIED columns (typed by the record's declaration)

else:
    Request = make_dataclass(
        "Request",
        [(c.name, c.decoded_type | None) for c in CARRIED]
        + [(f.name, f.type) for f in dataclass_fields(DerivedColumns)],
        slots=True,
        namespace={
            "__doc__": "One record reduced to what the report needs: DerivedColumns plus the CARRIED columns.",
            "__module__": __name__,
            "sampled": DerivedColumns.sampled,
            "decode_start": DerivedColumns.decode_start,
            "tokens_per_s": DerivedColumns.tokens_per_s,
        },
    )
_carried_values = attrgetter(*(c.name for c in CARRIED))
_new_request: Any = Request


def to_request(record: InteractionRecord | Any) -> Request | None:
    """The report's view of ``record`` (an InteractionRecord or anything with its column names, like
    ``load.ReportColumns``); None when its ``started_at`` is unreadable."""
    start = epoch_seconds(record.started_at)
    if start is None:
        return None
    total = record.total_ms
    flags = tuple(str(flag) for flag in record.flags or ())
    key, turns = conversation(record)
    return _new_request(  # type: ignore[no-any-return]
        *_carried_values(record),
        id=record.id or "",
        start=start,
        end=start + (total or 0.0) / 1000.0,
        first_token=None if record.ttft_ms is None else start + record.ttft_ms / 1000.0,
        model=record.model or "",
        kind=record.kind or "",
        flags=flags,
        prompt=preview(record.prompt),
        request_bytes=record.request_bytes or 0,
        prompt_chars=prompt_chars(record),
        tool_calls=bool(record.tool_calls),
        category=error_category(record.status, record.error, flags),
        # a remote (cloud) model is not run by the local scheduler: its time is not this machine's
        inference=(record.kind or "") in INFERENCE_KINDS and bool(record.model) and not record.remote,
        load_ms=record.load_duration_ms,
        prompt_eval_ms=record.prompt_eval_duration_ms,
        eval_ms=record.eval_duration_ms,
        hidden_wait_ms=hidden_wait_ms(record),
        wire_overhead_ms=wire_overhead_ms(record),
        served_remotely=bool(getattr(record, "remote", None)) or FLAG_REMOTE_MODEL in flags,
        conversation=key,
        turns=turns,
    )
