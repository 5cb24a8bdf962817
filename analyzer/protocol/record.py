"""The one interaction record shared by the proxy log, pcap tables, CSV, SQLite and DataFrames — declared once.

Every producer (the mitmproxy addon, the pcap analyzer) builds an :class:`InteractionRecord`
through :class:`analyzer.protocol.interaction.InteractionBuilder`; every consumer reads the same names.

Each column is declared once, below, as a field of :class:`InteractionRecord`: its Python type (the annotation),
its default, its group, a one-line meaning and the views that read it (:func:`column`). Everything else is
derived from that declaration (:data:`SCHEMA`): JSON type checks (:func:`record_problem`), CSV/SQLite/pandas
conversions (:func:`scalar_row`, :func:`record_from_row`, :attr:`Column.sqlite_type`, :attr:`Column.pandas_dtype`),
the report's decoded columns and requests (``analyzer.report``), the ``logs --summary`` fast path
(``analyzer.store.digest``), the OTel span attributes (``analyzer.export.mapping``) and the column table in
``docs/record.md`` (``docs/generate_record.py``). Adding a column is one declaration here.
"""

from __future__ import annotations

import json
import types
import typing
from collections.abc import Callable
from dataclasses import MISSING, asdict, dataclass, field, fields
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


# -- groups: what a column is about (docs/record.md lists them in this order) -----------------------------------
IDENTITY = "identity"
CONTENT = "content"
OUTCOME = "outcome"
TIMING = "timing"
COUNTERS = "Ollama counters"
SIZES = "sizes"
RESOURCES = "resources"
REMOTE = "remote"
OPTIONS = "request options"
REPLAY = "replay"
GROUPS: dict[str, str] = {
    IDENTITY: "who asked what, where and when",
    CONTENT: "the text that went in and came out (redaction applies)",
    OUTCOME: "how the exchange ended",
    TIMING: "times measured on the wire (ms after `started_at`, unless said otherwise)",
    COUNTERS: "what Ollama reported about its own work (final object or OpenAI `usage`)",
    SIZES: "bytes on the wire",
    RESOURCES: "the machine over the request's time (see Resources below)",
    REMOTE: "a model that runs elsewhere (cloud)",
    OPTIONS: "the request's options as sent; empty when the request did not set them",
    REPLAY: "what `replay` needs to send the request again, and what a replayed record replays",
}

# -- views: consumers that read a subset of the columns (every column is in the log, CSV, SQLite and pandas) -----
SUMMARY = "summary"  # `logs --summary` reads it (store/digest.py `_columns`; kept in the per-day summary cache)
REPORT = "report"  # the report reads it (report/load.py decodes it; report/derive.py Request carries or derives it)
SPAN = "span"  # exported as the span attribute `ollama.<name>` (export/mapping.py; ms columns in seconds)
VIEWS: dict[str, str] = {
    SUMMARY: "`logs --summary` (`store/digest.py`)",
    REPORT: "the report's requests (`report/derive.py`)",
    SPAN: "OTel span attribute `ollama.<name>` (`export/mapping.py`)",
}


def column(
    group: str,
    meaning: str,
    *,
    default: Any = None,
    factory: Callable[[], Any] | None = None,
    unit: str = "",
    views: tuple[str, ...] = (),
) -> Any:
    """Declare one column of :class:`InteractionRecord` (a dataclass field carrying the schema's metadata).

    ``group`` is one of :data:`GROUPS`, ``meaning`` the one line docs/record.md shows, ``unit`` the unit of a
    number (``ms`` columns are exported in seconds), ``views`` which of :data:`VIEWS` read it.
    """
    if group not in GROUPS:
        raise ValueError(f"unknown column group {group!r}")
    unknown = set(views) - set(VIEWS)
    if unknown:
        raise ValueError(f"unknown column views {sorted(unknown)}")
    metadata = {"group": group, "meaning": meaning, "unit": unit, "views": frozenset(views)}
    if factory is not None:
        return field(default_factory=factory, metadata=metadata)
    return field(default=default, metadata=metadata)


@dataclass
class InteractionRecord:
    """One request/response exchange with an Ollama server. See docs/record.md for every column."""

    # identity
    id: str = column(
        IDENTITY,
        "proxy: mitmproxy's flow id; pcap: `pcap-` + a hash of client, server, `started_at`, method and path, so the"
        " same exchange found in two overlapping captures gets the same id",
        default="",
        views=(REPORT,),
    )
    source: str = column(
        IDENTITY,
        "`proxy`, `pcap`, or `replay` (written by `ollama-wire replay`; reading commands leave those out unless"
        " `--include-replays`)",
        default="",
        views=(SPAN, SUMMARY, REPORT),
    )
    started_at: str = column(
        IDENTITY,
        "ISO-8601 UTC (`2026-11-28T21:53:29.366097Z`) of the first request byte; if a capture missed the request,"
        " of the first captured response byte",
        default="",
        views=(SUMMARY, REPORT),
    )
    client: str = column(IDENTITY, "`ip:port` of the client (`[::1]:5000` for IPv6)", default="")
    server: str = column(IDENTITY, "`ip:port` of the Ollama server (the proxy's upstream)", default="")
    method: str = column(IDENTITY, "request method; empty when the capture missed the request", default="")
    path: str = column(
        IDENTITY,
        "request path with its query string; empty when the capture missed the request",
        default="",
        views=(SPAN,),
    )
    status: int | None = column(
        IDENTITY,
        "HTTP status; empty when unknown (capture started mid-response, upstream never answered)",
        views=(SUMMARY, REPORT),
    )
    api: str = column(
        IDENTITY,
        "`ollama` (native `/api/*`), `openai` (`/v1/*`, Responses included) or `anthropic` (`/v1/messages`)",
        default="",
        views=(REPORT, SPAN),
    )
    kind: str = column(
        IDENTITY,
        "`generate`, `chat`, `embed`, `embeddings`, `pull`, `push`, `create`, `tags`, `ps`, `show`, `version`,"
        " `copy`, `delete`, `blobs`, `models`, `root`, `messages` (Anthropic), `responses` (OpenAI Responses),"
        " `images`, `transcription`, `status`, `web_search`, `web_fetch`, `recommendations`, `account`, and `load` /"
        " `unload` for an empty-prompt generate/chat (model management). OpenAI `/v1/completions` is `generate`,"
        " `/v1/embeddings` is `embed`; HEAD requests get their path's kind (see the endpoint list)",
        default="",
        views=(REPORT,),
    )
    model: str | None = column(IDENTITY, "from the request, else from the response", views=(SUMMARY, REPORT))
    stream: bool | None = column(
        IDENTITY,
        "what the request asked for (`stream` field, with each API's default: native generate/chat/pull stream by"
        " default, OpenAI does not); otherwise (GET endpoints, a capture that missed the request) whether the"
        " response was NDJSON/SSE",
        views=(REPORT,),
    )
    # content
    prompt: str | None = column(
        CONTENT,
        "generate: `prompt`; chat, messages, responses: the last user message's text (content parts' text"
        " joined); responses with a string `input`, embed: `input`; transcription: the form's `prompt`",
        views=(REPORT,),
    )
    system: str | None = column(
        CONTENT,
        "generate and Anthropic: `system` (Anthropic text blocks joined); chat: the system (and `developer`) messages"
        " joined with newlines; responses: `instructions`",
        views=(REPORT,),
    )
    messages: list[Any] | None = column(
        CONTENT,
        "chat and Anthropic: the request's `messages` as sent; responses: its `input` items (images replaced per"
        " redaction)",
        views=(REPORT,),
    )
    response_text: str = column(
        CONTENT,
        "the concatenated content tokens (`response`, `message.content`, `delta.content`, `choices[].text`,"
        " Anthropic `text_delta`, Responses `output_text.delta`, a transcription's `text`); for pull/push/create the"
        " last `status`",
        default="",
    )
    thinking_text: str = column(
        CONTENT,
        "concatenated `thinking` / `message.thinking` / `delta.reasoning` / Anthropic `thinking_delta` / Responses"
        " `reasoning_summary_text.delta`",
        default="",
    )
    tool_calls: list[Any] = column(
        CONTENT,
        "native tool calls as sent; OpenAI streamed tool-call deltas merged per `index`; Anthropic `tool_use` blocks"
        " (`input_json_delta` joined and parsed); Responses `function_call` items (argument deltas joined)",
        factory=list,
        views=(REPORT,),
    )
    # outcome
    done_reason: str | None = column(
        OUTCOME,
        "native `done_reason` (`stop`, `length`, `load`, `unload`; empty: the connection closed), OpenAI"
        " `finish_reason`, Anthropic `stop_reason`, Responses `status` (or `incomplete_details.reason`)",
        views=(REPORT,),
    )
    error: str | None = column(
        OUTCOME,
        'Ollama\'s error message (`{"error": …}` before or during the stream, OpenAI and Anthropic `error.message`,'
        " an Anthropic `error` event, a Responses `response.failed` or `error` event), `HTTP <status>` for an error"
        " without a body, or the proxy's upstream failure",
        views=(SUMMARY, REPORT),
    )
    complete: bool = column(
        OUTCOME,
        "the response ended the way the protocol ends a finished response: `done:true` (native stream), `data:"
        " [DONE]` (SSE), a whole JSON body (also for error statuses). Once that end was seen, a client or server"
        " hanging up before the last empty HTTP chunk is not an abort (the openai client does this after"
        " `[DONE]`). False after an error line mid-stream, an abort, or a cut capture",
        default=False,
        views=(SPAN,),
    )
    flags: list[str] = column(
        OUTCOME,
        "see Flags below",
        factory=list,
        views=(
            REPORT,
            SPAN,
        ),
    )
    # timing
    ttfb_ms: float | None = column(TIMING, "first response byte (status line)", unit="ms")
    ttft_ms: float | None = column(
        TIMING,
        "arrival of the first chunk carrying a **non-empty** content, thinking or tool-call token (not the first"
        " byte; empty role-only chunks do not count). For a non-streamed body: its last byte",
        unit="ms",
        views=(SUMMARY, REPORT),
    )
    total_ms: float | None = column(TIMING, "last response byte (or the abort)", unit="ms", views=(REPORT,))
    gen_ms: float | None = column(TIMING, "first to last token-bearing chunk", unit="ms")
    chunks: int = column(
        TIMING,
        "stream objects parsed (NDJSON lines or SSE data events, `[DONE]` excluded); 1 for a JSON body",
        default=0,
        views=(SPAN,),
    )
    wire_tokens_per_s: float | None = column(
        TIMING,
        "token-bearing chunks after the first, divided by `gen_ms`: the rate the client actually saw",
        unit="tokens/s",
        views=(SUMMARY, REPORT),
    )
    gap_p50_ms: float | None = column(
        TIMING, "median gap between consecutive token-bearing chunks", unit="ms", views=(REPORT,)
    )
    gap_p95_ms: float | None = column(
        TIMING,
        "95th percentile of the gaps between consecutive token-bearing chunks (linear-interpolated)",
        unit="ms",
        views=(SPAN,),
    )
    gap_max_ms: float | None = column(
        TIMING, "longest gap between consecutive token-bearing chunks", unit="ms", views=(REPORT,)
    )
    # Ollama's counters
    prompt_eval_count: int | None = column(
        COUNTERS, "prompt tokens evaluated (OpenAI `usage.prompt_tokens`)", unit="tokens", views=(REPORT,)
    )
    eval_count: int | None = column(
        COUNTERS, "tokens generated (OpenAI `usage.completion_tokens`)", unit="tokens", views=(SUMMARY, REPORT)
    )
    total_duration_ms: float | None = column(
        COUNTERS, "Ollama's `total_duration` (an amount of time)", unit="ms", views=(REPORT, SPAN)
    )
    load_duration_ms: float | None = column(
        COUNTERS,
        "Ollama's `load_duration`",
        unit="ms",
        views=(
            REPORT,
            SPAN,
        ),
    )
    prompt_eval_duration_ms: float | None = column(
        COUNTERS,
        "Ollama's `prompt_eval_duration`",
        unit="ms",
        views=(
            REPORT,
            SPAN,
        ),
    )
    eval_duration_ms: float | None = column(
        COUNTERS,
        "Ollama's `eval_duration`",
        unit="ms",
        views=(
            REPORT,
            SPAN,
        ),
    )
    eval_tokens_per_s: float | None = column(
        COUNTERS,
        "Ollama's own generation rate: `eval_count / eval_duration * 1e9`",
        unit="tokens/s",
        views=(SUMMARY, REPORT),
    )
    prompt_tokens_per_s: float | None = column(
        COUNTERS, "Ollama's own prompt rate: `prompt_eval_count / prompt_eval_duration * 1e9`", unit="tokens/s"
    )
    # sizes
    request_bytes: int = column(
        SIZES,
        "de-chunked request body size as sent (before any content decoding)",
        default=0,
        unit="bytes",
        views=(REPORT,),
    )
    response_bytes: int = column(
        SIZES, "de-chunked response body size as sent (before any content decoding)", default=0, unit="bytes"
    )
    # resources over the request's time, from the machine samplers (analyzer.resources); None when unsampled
    gpu_util_mean_pct: float | None = column(
        RESOURCES,
        "the GPU's busy share over the request, time-weighted mean of the sampler's readings (NVML's buffered"
        " utilisation samples; Apple: GPU active residency). The whole device, not shared between overlapping"
        " requests",
        unit="%",
        views=(REPORT,),
    )
    gpu_mem_max_mb: float | None = column(
        RESOURCES,
        "most GPU memory in use during the request (NVML used memory; without NVML and with the `ollama_ps` source"
        " listed, the `size_vram` Ollama's `/api/ps` reports for its loaded models)",
        unit="MB",
        views=(REPORT,),
    )
    power_mean_w: float | None = column(
        RESOURCES,
        "mean power over the request (NVML board power; Apple: CPU + GPU + ANE power). The whole device, not shared",
        unit="W",
        views=(REPORT,),
    )
    energy_j: float | None = column(
        RESOURCES,
        "this request's share of the energy used during it (NVML's energy counter, or power integrated over time;"
        " see Resources below)",
        unit="J",
        views=(REPORT,),
    )
    joules_per_token: float | None = column(RESOURCES, "`energy_j / eval_count`", unit="J/token", views=(REPORT,))
    server_cpu_ms: float | None = column(
        RESOURCES,
        "this request's share of the CPU time the Ollama server process and its runner children used during it (an"
        " amount of time)",
        unit="ms",
        views=(REPORT,),
    )
    server_rss_max_mb: float | None = column(
        RESOURCES,
        "largest resident memory of the Ollama server process and its runners (summed) during the request",
        unit="MB",
        views=(REPORT,),
    )
    energy_source: str | None = column(
        RESOURCES,
        "where `energy_j` came from: `nvml_counter`, `power_integral`, `macmon` or `powermetrics`",
        views=(REPORT,),
    )
    gpu_mem_source: str | None = column(
        RESOURCES, "where `gpu_mem_max_mb` came from: `nvml` or `ollama_ps`", views=(REPORT,)
    )
    # the first token split by what it was (thinking, answer, tool call); ttft_ms stays the first of any
    ttft_thinking_ms: float | None = column(
        TIMING, "arrival of the first chunk carrying a thinking token, on every API", unit="ms", views=(REPORT, SPAN)
    )
    ttft_content_ms: float | None = column(
        TIMING, "arrival of the first chunk carrying an answer (content) token", unit="ms", views=(REPORT, SPAN)
    )
    thinking_ms: float | None = column(
        TIMING,
        "first thinking token to the first token that is not thinking (answer or tool call): an amount of time;"
        " streams only (a single body arrives at once), empty when the response never got past thinking",
        unit="ms",
        views=(REPORT, SPAN),
    )
    ttft_tool_ms: float | None = column(
        TIMING,
        "arrival of the first tool-call bytes (native/OpenAI `tool_calls`, Anthropic `input_json_delta`, Responses"
        " `function_call_arguments.delta`)",
        unit="ms",
        views=(REPORT, SPAN),
    )
    prompt_eval_cached_count: int | None = column(
        COUNTERS,
        "prompt tokens read from the cache: native `prompt_eval_cached_count`, OpenAI chat"
        " `usage.prompt_tokens_details.cached_tokens`, Anthropic `cache_read_input_tokens` (servers after v0.33);"
        " never the Responses API's `cached_tokens`, which Ollama writes as a constant 0",
        unit="tokens",
        views=(REPORT,),
    )
    # remote (cloud) models: the server answered for a model that runs elsewhere
    remote: bool | None = column(
        REMOTE,
        "true: a remote model answered (`remote_model`/`remote_host` in the reply, or a name tagged `cloud` /"
        " `…-cloud`); false: a native reply finished without naming one; empty: unknown (OpenAI and Anthropic"
        " replies do not say)",
        views=(REPORT, SPAN),
    )
    remote_model: str | None = column(REMOTE, "the remote model's name as the response gives it", views=(REPORT,))
    remote_host: str | None = column(REMOTE, "the host that served the remote model")
    # request options as sent (None when the request did not set them)
    opt_num_ctx: int | None = column(OPTIONS, "`options.num_ctx`", unit="tokens", views=(REPORT,))
    opt_num_predict: int | None = column(
        OPTIONS,
        "`options.num_predict`; OpenAI `max_tokens` (not `max_completion_tokens`, which Ollama ignores), Anthropic"
        " `max_tokens`, Responses `max_output_tokens`",
        unit="tokens",
        views=(REPORT,),
    )
    opt_temperature: float | None = column(
        OPTIONS, "`options.temperature`; `temperature` on the other APIs (as sent, not Ollama's default 1.0)"
    )
    opt_seed: int | None = column(OPTIONS, "`options.seed` (OpenAI `seed`)")
    opt_keep_alive: str | None = column(OPTIONS, "`keep_alive` as sent (a duration text or seconds)", views=(REPORT,))
    opt_think: str | None = column(
        OPTIONS,
        "`think` (`true`, `false`, `low`, `medium`, `high`, `max`); OpenAI `reasoning_effort` / `reasoning.effort`"
        " (`none` is `false`); Anthropic `thinking.type` (`enabled`/`disabled`) or `output_config.effort`",
        views=(REPORT,),
    )
    opt_truncate: bool | None = column(OPTIONS, "`truncate`", views=(REPORT,))
    opt_shift: bool | None = column(OPTIONS, "`shift`", views=(REPORT,))
    opt_logprobs: bool | None = column(OPTIONS, "`logprobs` (OpenAI completions: a count above 0)")
    opt_format: bool | None = column(
        OPTIONS,
        "a `format` (structured output) was sent: native `format`, OpenAI `response_format` json_object/json_schema,"
        " Responses `text.format`",
    )
    opt_tools: int | None = column(OPTIONS, "how many tools the request offered (any API)", views=(REPORT,))
    # what replay needs to send the same request again, and what a replayed record replays
    request_body: str | None = column(
        REPLAY,
        "the request body as sent (gzip/deflate undone), after redaction (see Request bodies below); empty when not"
        " kept whole",
    )
    request_content_type: str | None = column(REPLAY, "the request's `Content-Type`")
    request_content_encoding: str | None = column(REPLAY, "the request's `Content-Encoding` (the body is decoded)")
    replay_of: str | None = column(REPLAY, "`id` of the record this request replays", views=(REPORT,))
    replay_label: str | None = column(REPLAY, "the label `replay` gave this run", views=(REPORT,))
    # how far started_at may be from the first request byte's arrival
    start_bound_ms: float | None = column(
        TIMING,
        "how far `started_at` may be from the first request byte's arrival (an amount of time); empty when not bounded",
        unit="ms",
        views=(REPORT,),
    )

    def to_dict(self) -> dict[str, Any]:
        """The record as a JSON-ready dict, keys in column order."""
        return asdict(self)

    def to_json(self) -> str:
        """One compact JSON line (no trailing newline), as written to the interaction log."""
        # The values as they are, not ``to_dict()``'s deep copy: they are only read here (a third of the cost).
        return _encode_json({name: getattr(self, name) for name in COLUMNS})

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> InteractionRecord:
        """Build a record from a dict, ignoring unknown keys (logs written by newer versions)."""
        known = {name: data[name] for name in COLUMNS if name in data}
        return cls(**known)


_encode_json = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode

_JSON_TYPES: dict[type, tuple[type, ...]] = {
    str: (str,),
    int: (int,),
    float: (int, float),
    bool: (bool,),
    list: (list,),
}
_TYPE_WORDS = {str: "text", int: "int", float: "float", bool: "bool", list: "list"}
_SQLITE_TYPES = {str: "TEXT", int: "INTEGER", float: "REAL", bool: "INTEGER", list: "TEXT"}
_PANDAS_DTYPES = {str: "object", int: "Int64", float: "float64", bool: "boolean", list: "object"}


@dataclass(frozen=True)
class Column:
    """One declared column of the record, as the derived views read it."""

    name: str
    value_type: type  # str, int, float, bool or list
    item: type | None  # a list's element type (``flags``: str); None for lists of any JSON value
    optional: bool  # the annotation allows None: an unknown value is absent, never a made-up one
    group: str
    meaning: str
    unit: str
    views: frozenset[str]
    default_factory: Callable[[], Any]  # the value a record gets when the column is absent

    @property
    def json_types(self) -> tuple[type, ...]:
        """What the column may hold in JSON (null is always accepted: older writers and unknown values)."""
        return _JSON_TYPES[self.value_type]

    @property
    def decoded_type(self) -> Any:
        """The type a typed JSON decoder (msgspec) checks the value against: ``str``, ``int``, ``float``,
        ``bool`` or ``list[Any]`` (list items are not checked, as in :func:`record_problem`)."""
        return list[Any] if self.value_type is list else self.value_type

    @property
    def type_word(self) -> str:
        """``text``, ``int``, ``float``, ``bool`` or ``list`` (docs/record.md)."""
        return _TYPE_WORDS[self.value_type]

    @property
    def sqlite_type(self) -> str:
        """The column's SQLite type (lists as JSON text, bools as 0/1)."""
        return _SQLITE_TYPES[self.value_type]

    @property
    def pandas_dtype(self) -> str:
        """The column's DataFrame dtype (nullable integers and booleans; lists stay Python lists)."""
        return _PANDAS_DTYPES[self.value_type]

    def parse(self, text: str) -> Any:
        """The value of a CSV cell (the inverse of :func:`scalar_row`; empty means absent). Raises ValueError."""
        if self.value_type is list:
            if self.item is str:
                return [item for item in text.split(";") if item]
            return json.loads(text) if text else self.default_factory()
        if text == "":
            return None if self.optional else self.default_factory()
        if self.value_type is bool:
            return text.lower() in ("true", "1")
        if self.value_type is int:
            return int(float(text))
        if self.value_type is float:
            return float(text)
        return text


def _columns_of(record_type: type) -> tuple[Column, ...]:
    hints = typing.get_type_hints(record_type)
    declared = []
    for spec in fields(record_type):
        hint = hints[spec.name]
        args = typing.get_args(hint) if isinstance(hint, types.UnionType) else ()
        optional = type(None) in args
        base = next((a for a in args if a is not type(None)), hint) if args else hint
        origin = typing.get_origin(base) or base
        item_args = typing.get_args(base)
        item = item_args[0] if origin is list and item_args and item_args[0] is not Any else None
        if origin not in _JSON_TYPES or not spec.metadata:
            raise TypeError(
                f"{record_type.__name__}.{spec.name}: declare it with column() and a str/int/float/bool/list type"
            )
        if spec.default_factory is not MISSING:
            factory: Callable[[], Any] = spec.default_factory
        else:
            factory = (lambda value: lambda: value)(spec.default)
        declared.append(
            Column(
                name=spec.name,
                value_type=origin,
                item=item,
                optional=optional,
                group=spec.metadata["group"],
                meaning=spec.metadata["meaning"],
                unit=spec.metadata["unit"],
                views=spec.metadata["views"],
                default_factory=factory,
            )
        )
    return tuple(declared)


SCHEMA: tuple[Column, ...] = _columns_of(InteractionRecord)
"""Every column, in the record's (and the log's) order."""

COLUMNS: tuple[str, ...] = tuple(c.name for c in SCHEMA)
BY_NAME: dict[str, Column] = {c.name: c for c in SCHEMA}
LIST_COLUMNS: tuple[str, ...] = tuple(c.name for c in SCHEMA if c.value_type is list)
# The measured resource columns (docs/record.md "Resources"): None unless a machine sampler covered the request.
RESOURCE_COLUMNS: tuple[str, ...] = tuple(c.name for c in SCHEMA if c.group == RESOURCES and c.value_type is float)


def columns_in(view: str) -> tuple[Column, ...]:
    """The columns a view (:data:`VIEWS`) reads, in record order."""
    if view not in VIEWS:
        raise ValueError(f"unknown view {view!r}")
    return tuple(c for c in SCHEMA if view in c.views)


_CHECKS = tuple((c.name, c.json_types, bool in c.json_types) for c in SCHEMA)


def record_problem(data: object) -> str | None:
    """Why ``data`` (one parsed log line) is not a record, or None when it is one."""
    if not isinstance(data, dict):
        return f"a JSON {type(data).__name__}, not an object"
    get = data.get
    for name, allowed, bool_allowed in _CHECKS:
        value = get(name)
        if value is not None and (not isinstance(value, allowed) or (isinstance(value, bool) and not bool_allowed)):
            return f"{name} is {type(value).__name__}"
    return None


def scalar_row(record: InteractionRecord | dict[str, Any]) -> dict[str, Any]:
    """The record flattened for CSV/SQLite/table output: lists of text (``flags``) joined with ``;``, other lists
    (``messages``, ``tool_calls``) as compact JSON text (empty string when absent)."""
    data = record.to_dict() if isinstance(record, InteractionRecord) else record
    row: dict[str, Any] = {}
    for spec in SCHEMA:
        value = data.get(spec.name)
        if spec.value_type is not list:
            row[spec.name] = value
        elif spec.item is str:
            row[spec.name] = ";".join(value or [])
        else:
            row[spec.name] = json.dumps(value, ensure_ascii=False, separators=(",", ":")) if value else ""
    return row


def record_from_row(row: dict[str, str]) -> InteractionRecord:
    """The inverse of :func:`scalar_row` for a CSV row (every value a string; empty means absent).

    Raises ValueError naming the column when a value does not fit it.
    """
    data: dict[str, Any] = {}
    for spec in SCHEMA:
        text = row.get(spec.name)
        if text is None:
            continue
        try:
            data[spec.name] = spec.parse(text)
        except ValueError as exc:
            raise ValueError(f"column {spec.name}: {text[:40]!r} is not a valid value") from exc
    return InteractionRecord(**data)
