"""A record as the GenAI conventions see it: span name, ids, times, attributes, events and metric measurements.

Pure functions of an :class:`InteractionRecord`, no SDK objects: ``telemetry`` turns them into spans and
instrument calls, tests compare them with what a collector received. Times in spans are epoch nanoseconds
(``started_at`` plus the record's millisecond offsets); durations in attributes and metrics are seconds.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from analyzer.export import semconv as sc
from analyzer.export.labels import LabelLimiter
from analyzer.protocol.durations import hidden_wait_ms
from analyzer.protocol.record import (
    FLAG_CLIENT_ABORTED,
    FLAG_ERROR_MID_STREAM,
    FLAG_NO_RESPONSE,
    FLAG_UPSTREAM_FAILED,
    SPAN,
    InteractionRecord,
    columns_in,
)

AttributeValue = str | bool | int | float | list[str]
Attributes = dict[str, AttributeValue]
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ERROR_FLAGS = (FLAG_NO_RESPONSE, FLAG_UPSTREAM_FAILED, FLAG_CLIENT_ABORTED, FLAG_ERROR_MID_STREAM)


@dataclass(frozen=True)
class SpanEvent:
    name: str
    timestamp_ns: int
    attributes: Attributes = field(default_factory=dict)


@dataclass(frozen=True)
class SpanData:
    """Everything one interaction's span carries."""

    name: str
    trace_id: int
    span_id: int
    start_ns: int
    end_ns: int
    attributes: Attributes
    events: list[SpanEvent]
    error: str | None  # the span status description when the interaction failed, else None


@dataclass(frozen=True)
class Measurement:
    metric: str  # one of semconv.HISTOGRAMS
    value: float
    attributes: Attributes


def operation_name(record: InteractionRecord) -> str:
    """``gen_ai.operation.name``: chat, text_completion, embeddings; other endpoints keep their kind (pull, ...)."""
    return sc.OPERATION_BY_KIND.get(record.kind, record.kind or "unknown")


def span_name(record: InteractionRecord) -> str:
    """``{gen_ai.operation.name} {gen_ai.request.model}`` (just the operation when there is no model)."""
    operation = operation_name(record)
    return f"{operation} {record.model}" if record.model else operation


def ids_for(record_id: str) -> tuple[int, int]:
    """Trace and span id derived from the record id: the same record always gets the same ids (idempotent replay)."""
    digest = hashlib.sha256(f"ollama-wire/{record_id}".encode()).digest()
    trace_id = int.from_bytes(digest[:16], "big") or 1
    span_id = int.from_bytes(digest[16:24], "big") or 1
    return trace_id, span_id


def epoch_ns(iso: str) -> int:
    """Nanoseconds since the epoch of an ISO-8601 time (``2026-11-28T21:53:29.366097Z``), exact to the µs."""
    moment = datetime.fromisoformat(iso.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    delta = moment - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1_000


def seconds(ms: float) -> float:
    """Milliseconds (rounded to the µs, as records keep them) as seconds without float noise."""
    return round(ms / 1000, 6)


def _offset_ns(ms: float | None) -> int:
    return round(ms * 1_000_000) if ms is not None else 0


def error_type(record: InteractionRecord) -> str | None:
    """``error.type``: the HTTP status for an error status, else the failure flag, else ``_OTHER``; None if fine."""
    if record.status is not None and record.status >= 400:
        return str(record.status)
    for flag in _ERROR_FLAGS:
        if flag in record.flags:
            return flag
    return sc.ERROR_TYPE_OTHER if record.error else None


def server_endpoint(record: InteractionRecord) -> tuple[str, int | None]:
    """(``server.address``, ``server.port``) from ``host:port`` / ``[v6]:port``."""
    server = record.server
    host, sep, port = server.rpartition(":")
    if not sep or not port.isdigit() or (host.count(":") and not host.startswith("[")):
        return server, None
    return host.strip("[]"), int(port)


def hidden_wait_s(record: InteractionRecord) -> float | None:
    """Ollama's hidden wait in seconds (:func:`analyzer.protocol.durations.hidden_wait_ms`); None when unknown."""
    wait = hidden_wait_ms(record)
    return None if wait is None else seconds(wait)


def metric_attributes(record: InteractionRecord) -> Attributes:
    """The low-cardinality attributes every measurement carries (never a prompt or an id)."""
    attributes: Attributes = {sc.OPERATION_NAME: operation_name(record), sc.PROVIDER_NAME: sc.PROVIDER}
    if record.model:
        attributes[sc.REQUEST_MODEL] = record.model  # the response model is the same name: on spans only
    address, port = server_endpoint(record)
    if address:
        attributes[sc.SERVER_ADDRESS] = address
    if port is not None:
        attributes[sc.SERVER_PORT] = port
    error = error_type(record)
    if error:
        attributes[sc.ERROR_TYPE] = error
    return attributes


def _text_part(text: str) -> dict[str, str]:
    return {"type": "text", "content": text}


def input_messages(record: InteractionRecord) -> list[dict[str, Any]]:
    """The request as ``gen_ai.input.messages`` (role + parts); system messages go to system instructions."""
    if record.messages:
        out = []
        for message in record.messages:
            if not isinstance(message, dict) or message.get("role") in ("system", "developer"):
                continue
            content = message.get("content")
            parts: list[dict[str, Any]] = []
            if isinstance(content, str) and content:
                parts.append(_text_part(content))
            elif isinstance(content, list):
                parts.extend(_text_part(p["text"]) for p in content if isinstance(p, dict) and "text" in p)
            for call in message.get("tool_calls") or []:
                parts.append({"type": "tool_call", "arguments": call})
            out.append({"role": str(message.get("role", "user")), "parts": parts})
        return out
    if record.prompt is not None:
        return [{"role": "user", "parts": [_text_part(record.prompt)]}]
    return []


def output_messages(record: InteractionRecord) -> list[dict[str, Any]]:
    """The response as ``gen_ai.output.messages``: text, reasoning and tool-call parts, and the finish reason."""
    parts: list[dict[str, Any]] = []
    if record.thinking_text:
        parts.append({"type": "reasoning", "content": record.thinking_text})
    if record.response_text:
        parts.append(_text_part(record.response_text))
    parts.extend({"type": "tool_call", "arguments": call} for call in record.tool_calls)
    if not parts:
        return []
    return [{"role": "assistant", "parts": parts, "finish_reason": record.done_reason or ""}]


def _json(value: object) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


_SPAN_COLUMNS = tuple((c.name, sc.column_attribute(c.name, c.unit), c.unit == "ms") for c in columns_in(SPAN))


def column_attributes(record: InteractionRecord) -> Attributes:
    """The record columns of the schema's ``span`` view as ``ollama.*`` attributes (ms in seconds), where known."""
    attributes: Attributes = {}
    for name, attribute, in_ms in _SPAN_COLUMNS:
        value = getattr(record, name)
        if value is None or (isinstance(value, list) and not value):
            continue
        attributes[attribute] = seconds(value) if in_ms else (list(value) if isinstance(value, list) else value)
    return attributes


def span_data(record: InteractionRecord, *, content: bool = False) -> SpanData:
    """The span for one record. ``content`` adds prompts and responses (as the record holds them: redacted)."""
    start = epoch_ns(record.started_at)
    end = start + max(0, _offset_ns(record.total_ms))
    attributes = metric_attributes(record)
    if record.model:
        attributes[sc.RESPONSE_MODEL] = record.model
    if record.stream is not None:
        attributes[sc.REQUEST_STREAM] = record.stream
    if record.prompt_eval_count is not None:
        attributes[sc.USAGE_INPUT_TOKENS] = record.prompt_eval_count
    if record.eval_count is not None:
        attributes[sc.USAGE_OUTPUT_TOKENS] = record.eval_count
    for attribute, value in (
        (sc.USAGE_CACHE_READ_INPUT_TOKENS, record.prompt_eval_cached_count),
        (sc.REQUEST_MAX_TOKENS, record.opt_num_predict),
        (sc.REQUEST_TEMPERATURE, record.opt_temperature),
        (sc.REQUEST_SEED, record.opt_seed),
    ):
        if value is not None:
            attributes[attribute] = value
    if record.done_reason:
        attributes[sc.FINISH_REASONS] = [record.done_reason]
    if record.stream and record.ttft_ms is not None:
        attributes[sc.TIME_TO_FIRST_CHUNK] = seconds(record.ttft_ms)
    attributes.update(column_attributes(record))
    hidden = hidden_wait_s(record)
    if hidden is not None:
        attributes[sc.OLLAMA_HIDDEN_WAIT] = hidden
    attributes[sc.OLLAMA_RECORD_ID] = record.id
    if record.status is not None:
        attributes[sc.OLLAMA_STATUS] = record.status
    if content:
        inputs, outputs = input_messages(record), output_messages(record)
        if inputs:
            attributes[sc.INPUT_MESSAGES] = _json(inputs)
        if outputs:
            attributes[sc.OUTPUT_MESSAGES] = _json(outputs)
        if record.system:
            attributes[sc.SYSTEM_INSTRUCTIONS] = _json([_text_part(record.system)])
    events = []
    if record.stream and record.ttft_ms is not None:
        events.append(
            SpanEvent(
                sc.EVENT_FIRST_TOKEN,
                start + _offset_ns(record.ttft_ms),
                {sc.TIME_TO_FIRST_CHUNK: seconds(record.ttft_ms)},
            )
        )
    error = error_type(record)
    description = record.error or error
    if error:
        events.append(
            SpanEvent(sc.EVENT_EXCEPTION, end, {"exception.type": error, "exception.message": description or error})
        )
    trace_id, span_id = ids_for(record.id)
    return SpanData(
        span_name(record), trace_id, span_id, start, end, attributes, events, description if error else None
    )


def measurements(record: InteractionRecord, labels: LabelLimiter | None = None) -> list[Measurement]:
    """What one finished inference interaction adds to the histograms (nothing for pull, tags, ...).

    ``labels`` bounds the attributes taken from traffic (the model, ...): every exporter of live metrics passes
    one, so no client can grow the number of series (``analyzer.export.labels``).
    """
    if operation_name(record) not in sc.INFERENCE_OPERATIONS:
        return []
    attributes = metric_attributes(record)
    if labels is not None:
        attributes = labels.bound(attributes)
    out: list[Measurement] = []

    def add(metric: str, value: float | None, extra: Attributes | None = None) -> None:
        if value is not None and value >= 0:
            out.append(Measurement(metric, value, {**attributes, **extra} if extra else attributes))

    add(sc.CLIENT_OPERATION_DURATION, record.total_ms / 1000 if record.total_ms is not None else None)
    if record.stream and record.ttft_ms is not None:
        add(sc.CLIENT_TIME_TO_FIRST_CHUNK, record.ttft_ms / 1000)
    if record.wire_tokens_per_s:
        add(sc.CLIENT_TIME_PER_OUTPUT_CHUNK, 1 / record.wire_tokens_per_s)
    if record.prompt_eval_count is not None:
        add(sc.CLIENT_TOKEN_USAGE, record.prompt_eval_count, {sc.TOKEN_TYPE: "input"})
    if record.eval_count is not None:
        add(sc.CLIENT_TOKEN_USAGE, record.eval_count, {sc.TOKEN_TYPE: "output"})
    total, evaluating = record.total_duration_ms, record.eval_duration_ms
    add(sc.SERVER_REQUEST_DURATION, total / 1000 if total is not None else None)
    if total is not None and evaluating is not None and record.eval_count:
        add(sc.SERVER_TIME_TO_FIRST_TOKEN, max(0.0, total - evaluating) / 1000)
        add(sc.SERVER_TIME_PER_OUTPUT_TOKEN, evaluating / record.eval_count / 1000)
    add(sc.OLLAMA_MODEL_LOAD_DURATION, record.load_duration_ms / 1000 if record.load_duration_ms is not None else None)
    return out
