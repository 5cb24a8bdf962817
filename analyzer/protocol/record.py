"""The one interaction record shared by the proxy log, pcap tables, CSV, SQLite and DataFrames.

Every producer (the mitmproxy addon, the pcap analyzer) builds an :class:`InteractionRecord`
through :class:`analyzer.protocol.interaction.InteractionBuilder`; every consumer reads the same names.
The column list and meanings are documented in ``docs/record.md``.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from typing import Any

# Flags a record can carry. Documented in docs/record.md; kept here so producers share spelling.
FLAG_CLIENT_ABORTED = "client_aborted"
FLAG_UPSTREAM_FAILED = "upstream_failed"
FLAG_ERROR_MID_STREAM = "error_mid_stream"
FLAG_TRUNCATED_BODY = "truncated_body"
FLAG_GAP_IN_CAPTURE = "gap_in_capture"
FLAG_CAPTURE_STARTED_MID_RESPONSE = "capture_started_mid_response"
FLAG_CAPTURE_STARTED_MID_REQUEST = "capture_started_mid_request"
FLAG_CAPTURE_ENDED_MID_RESPONSE = "capture_ended_mid_response"
FLAG_CAPTURE_ENDED_MID_REQUEST = "capture_ended_mid_request"
FLAG_UNPARSABLE_LINE = "unparsable_line"
FLAG_ENCODED_BODY = "encoded_body"
FLAG_NO_RESPONSE = "no_response"
FLAG_SHUTDOWN = "proxy_shutdown"
FLAG_REDACTED = "redacted"
FLAG_RECORDER_ERROR = "recorder_error"
FLAG_REMOTE_MODEL = "remote_model"  # served by a remote/cloud model: its time is not the local machine's
FLAG_RESOURCES_UNAVAILABLE = "resources_unavailable"  # written by the proxy without the companion's resource columns


def format_address(host: str, port: int | None) -> str:
    """``host:port`` with IPv6 hosts in brackets (``[::1]:11434``); the one spelling every producer uses."""
    if port is None:
        return host
    if ":" in host and not host.startswith("["):
        return f"[{host}]:{port}"
    return f"{host}:{port}"


@dataclass
class InteractionRecord:
    """One request/response exchange with an Ollama server. See docs/record.md for every column."""

    id: str = ""
    source: str = ""  # "proxy" | "pcap"
    started_at: str = ""  # ISO-8601 UTC of the first request byte
    client: str = ""  # "ip:port"
    server: str = ""  # "ip:port" (or "host:port")
    method: str = ""
    path: str = ""
    status: int | None = None
    api: str = ""  # "ollama" | "openai"
    kind: str = ""  # generate | chat | embed | embeddings | pull | push | create | tags | ps | show | ...
    model: str | None = None
    stream: bool | None = None
    prompt: str | None = None
    system: str | None = None
    messages: list[Any] | None = None
    response_text: str = ""
    thinking_text: str = ""
    tool_calls: list[Any] = field(default_factory=list)
    done_reason: str | None = None
    error: str | None = None
    complete: bool = False
    flags: list[str] = field(default_factory=list)
    ttfb_ms: float | None = None
    ttft_ms: float | None = None
    total_ms: float | None = None
    gen_ms: float | None = None
    chunks: int = 0
    wire_tokens_per_s: float | None = None
    gap_p50_ms: float | None = None
    gap_p95_ms: float | None = None
    gap_max_ms: float | None = None
    prompt_eval_count: int | None = None
    eval_count: int | None = None
    total_duration_ms: float | None = None
    load_duration_ms: float | None = None
    prompt_eval_duration_ms: float | None = None
    eval_duration_ms: float | None = None
    eval_tokens_per_s: float | None = None
    prompt_tokens_per_s: float | None = None
    request_bytes: int = 0
    response_bytes: int = 0
    # Resources over the request's time, from the machine samplers (analyzer.resources); None when unsampled.
    gpu_util_mean_pct: float | None = None
    gpu_mem_max_mb: float | None = None
    power_mean_w: float | None = None
    energy_j: float | None = None
    joules_per_token: float | None = None
    server_cpu_ms: float | None = None
    server_rss_max_mb: float | None = None
    # Where energy_j came from (nvml_counter, power_integral, macmon, powermetrics), gpu_mem_max_mb (nvml, ollama_ps).
    energy_source: str | None = None
    gpu_mem_source: str | None = None
    # The first token split by what it was (thinking, answer, tool call); ttft_ms stays the first of any.
    ttft_thinking_ms: float | None = None
    ttft_content_ms: float | None = None
    thinking_ms: float | None = None
    ttft_tool_ms: float | None = None
    prompt_eval_cached_count: int | None = None
    # Remote (cloud) models: the server answered for a model that runs elsewhere.
    remote: bool | None = None
    remote_model: str | None = None
    remote_host: str | None = None
    # Request options as sent (None when the request did not set them).
    opt_num_ctx: int | None = None
    opt_num_predict: int | None = None
    opt_temperature: float | None = None
    opt_seed: int | None = None
    opt_keep_alive: str | None = None
    opt_think: str | None = None
    opt_truncate: bool | None = None
    opt_shift: bool | None = None
    opt_logprobs: bool | None = None
    opt_format: bool | None = None
    opt_tools: int | None = None
    # What replay needs to send the same request again, and what a replayed record replays.
    request_body: str | None = None
    request_content_type: str | None = None
    request_content_encoding: str | None = None
    replay_of: str | None = None
    replay_label: str | None = None
    # How far started_at may be from the first request byte's arrival (ms); None when not bounded.
    start_bound_ms: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """The record as a JSON-ready dict, keys in column order."""
        return asdict(self)

    def to_json(self) -> str:
        """One compact JSON line (no trailing newline), as written to the interaction log."""
        return json.dumps(self.to_dict(), ensure_ascii=False, separators=(",", ":"))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> InteractionRecord:
        """Build a record from a dict, ignoring unknown keys (logs written by newer versions)."""
        known = {name: data[name] for name in COLUMNS if name in data}
        return cls(**known)


COLUMNS: tuple[str, ...] = tuple(f.name for f in fields(InteractionRecord))

LIST_COLUMNS: tuple[str, ...] = ("messages", "tool_calls", "flags")
# The resource columns (docs/record.md "Resources"): None unless a machine sampler covered the request.
RESOURCE_COLUMNS: tuple[str, ...] = (
    "gpu_util_mean_pct",
    "gpu_mem_max_mb",
    "power_mean_w",
    "energy_j",
    "joules_per_token",
    "server_cpu_ms",
    "server_rss_max_mb",
)
_BOOL_FIELDS = frozenset({"stream", "complete", "remote", "opt_truncate", "opt_shift", "opt_logprobs", "opt_format"})
_INT_FIELDS = frozenset(
    {
        "status",
        "chunks",
        "prompt_eval_count",
        "eval_count",
        "request_bytes",
        "response_bytes",
        "prompt_eval_cached_count",
        "opt_num_ctx",
        "opt_num_predict",
        "opt_seed",
        "opt_tools",
    }
)
_FLOAT_FIELDS = frozenset({"opt_temperature"})
# Suffixes of the numeric (float) columns: times, rates and the resource columns (percent, MB, W, J).
NUMERIC_SUFFIXES = ("_ms", "_per_s", "_pct", "_mb", "_w", "_j", "_per_token")


def _json_types(name: str) -> tuple[type, ...]:
    """What a column may hold in JSON (None is always allowed)."""
    if name in LIST_COLUMNS:
        return (list,)
    if name in _BOOL_FIELDS:
        return (bool,)
    if name in _INT_FIELDS:
        return (int,)
    if name.endswith(NUMERIC_SUFFIXES) or name in _FLOAT_FIELDS:
        return (int, float)
    return (str,)


def record_problem(data: object) -> str | None:
    """Why ``data`` (one parsed log line) is not a record, or None when it is one."""
    if not isinstance(data, dict):
        return f"a JSON {type(data).__name__}, not an object"
    for name in COLUMNS:
        value, allowed = data.get(name), _json_types(name)
        if value is not None and (not isinstance(value, allowed) or (isinstance(value, bool) and bool not in allowed)):
            return f"{name} is {type(value).__name__}"
    return None


def scalar_row(record: InteractionRecord | dict[str, Any]) -> dict[str, Any]:
    """The record flattened for CSV/SQLite/table output: ``flags`` joined with ``;``,
    ``messages`` and ``tool_calls`` as compact JSON text (empty string when absent)."""
    data = record.to_dict() if isinstance(record, InteractionRecord) else record
    row: dict[str, Any] = {}
    for name in COLUMNS:
        value = data.get(name)
        if name == "flags":
            row[name] = ";".join(value or [])
        elif name in LIST_COLUMNS:
            row[name] = json.dumps(value, ensure_ascii=False, separators=(",", ":")) if value else ""
        else:
            row[name] = value
    return row


def record_from_row(row: dict[str, str]) -> InteractionRecord:
    """The inverse of :func:`scalar_row` for a CSV row (every value a string; empty means absent).

    Raises ValueError naming the column when a value does not fit it.
    """
    data: dict[str, Any] = {}
    for name in COLUMNS:
        text = row.get(name)
        if text is None:
            continue
        try:
            if name == "flags":
                data[name] = [f for f in text.split(";") if f]
            elif name in LIST_COLUMNS:
                data[name] = json.loads(text) if text else ([] if name == "tool_calls" else None)
            elif name in _BOOL_FIELDS:
                data[name] = None if text == "" else text.lower() in ("true", "1")
            elif name in _INT_FIELDS:
                data[name] = None if text == "" else int(float(text))
            elif name.endswith(NUMERIC_SUFFIXES) or name in _FLOAT_FIELDS:
                data[name] = None if text == "" else float(text)
            elif name in _OPTIONAL_TEXT:
                data[name] = text or None
            else:
                data[name] = text
        except ValueError as exc:
            raise ValueError(f"column {name}: {text[:40]!r} is not a valid value") from exc
    if data.get("chunks") is None:
        data.pop("chunks", None)
    for name in ("request_bytes", "response_bytes", "complete"):
        if data.get(name) is None:
            data.pop(name, None)
    return InteractionRecord(**data)


_OPTIONAL_TEXT = frozenset(
    {
        "model",
        "prompt",
        "system",
        "done_reason",
        "error",
        "energy_source",
        "gpu_mem_source",
        "remote_model",
        "remote_host",
        "opt_keep_alive",
        "opt_think",
        "request_body",
        "request_content_type",
        "request_content_encoding",
        "replay_of",
        "replay_label",
    }
)
