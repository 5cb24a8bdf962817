"""The OpenTelemetry GenAI semantic-convention names this project emits, pinned to one released version.

The GenAI conventions are in status Development: the last release inside ``open-telemetry/semantic-conventions``
is v1.41.0; they have since moved to ``semantic-conventions-genai``, where names are still changing. Every
name, unit and bucket boundary the export layer uses is defined here and nowhere else, so moving to a newer
version is an edit of this one file (and of docs/fleet.md's rules and dashboard, which a test checks against it).
"""

from __future__ import annotations

SEMCONV_VERSION = "1.41.0"
SCHEMA_URL = f"https://opentelemetry.io/schemas/{SEMCONV_VERSION}"
INSTRUMENTATION_NAME = "ollama-wire"
PROVIDER = "ollama"  # gen_ai.provider.name

# -- attributes (spans and metrics) ----------------------------------------------------------------------
OPERATION_NAME = "gen_ai.operation.name"
PROVIDER_NAME = "gen_ai.provider.name"
REQUEST_MODEL = "gen_ai.request.model"
RESPONSE_MODEL = "gen_ai.response.model"
REQUEST_STREAM = "gen_ai.request.stream"
USAGE_INPUT_TOKENS = "gen_ai.usage.input_tokens"
USAGE_OUTPUT_TOKENS = "gen_ai.usage.output_tokens"
USAGE_CACHE_READ_INPUT_TOKENS = "gen_ai.usage.cache_read.input_tokens"  # included in gen_ai.usage.input_tokens
REQUEST_MAX_TOKENS = "gen_ai.request.max_tokens"
REQUEST_TEMPERATURE = "gen_ai.request.temperature"
REQUEST_SEED = "gen_ai.request.seed"
FINISH_REASONS = "gen_ai.response.finish_reasons"
TIME_TO_FIRST_CHUNK = "gen_ai.response.time_to_first_chunk"
INPUT_MESSAGES = "gen_ai.input.messages"
OUTPUT_MESSAGES = "gen_ai.output.messages"
SYSTEM_INSTRUCTIONS = "gen_ai.system_instructions"
TOKEN_TYPE = "gen_ai.token.type"
SERVER_ADDRESS = "server.address"
SERVER_PORT = "server.port"
ERROR_TYPE = "error.type"
ERROR_TYPE_OTHER = "_OTHER"

# gen_ai.operation.name per record kind (other kinds keep their own name: pull, tags, ...)
OPERATION_BY_KIND = {
    "chat": "chat",
    "messages": "chat",  # Anthropic Messages (/v1/messages)
    "responses": "chat",  # OpenAI Responses (/v1/responses)
    "generate": "text_completion",
    "embed": "embeddings",
    "embeddings": "embeddings",
}
INFERENCE_OPERATIONS = frozenset(OPERATION_BY_KIND.values())

# -- Ollama-specific span attributes (no convention covers them) -------------------------------------
OLLAMA_LOAD_DURATION = "ollama.load_duration"  # seconds, Ollama's load_duration
OLLAMA_PROMPT_EVAL_DURATION = "ollama.prompt_eval_duration"
OLLAMA_EVAL_DURATION = "ollama.eval_duration"
OLLAMA_TOTAL_DURATION = "ollama.total_duration"
OLLAMA_HIDDEN_WAIT = "ollama.hidden_wait"  # total − load − prompt_eval − eval, clamped at 0
OLLAMA_FLAGS = "ollama.flags"
OLLAMA_TTFT_THINKING = "ollama.ttft_thinking"  # seconds to the first thinking token
OLLAMA_TTFT_CONTENT = "ollama.ttft_content"  # seconds to the first answer token
OLLAMA_THINKING = "ollama.thinking"  # seconds from the first thinking token to the first answer/tool token
OLLAMA_TTFT_TOOL = "ollama.ttft_tool"  # seconds to the first tool-call bytes
OLLAMA_REMOTE = "ollama.remote"  # a remote (cloud) model answered
OLLAMA_API = "ollama.api"
OLLAMA_PATH = "ollama.path"
OLLAMA_STATUS = "ollama.http.status"
OLLAMA_RECORD_ID = "ollama.record.id"
OLLAMA_SOURCE = "ollama.source"
OLLAMA_CHUNKS = "ollama.chunks"
OLLAMA_GAP_P95 = "ollama.gap_p95"
OLLAMA_COMPLETE = "ollama.complete"
# Every record column in the schema's ``span`` view becomes ``ollama.<column>`` (a millisecond column in seconds,
# its ``_ms`` dropped): the names above that name a column are this rule's results, kept for readers and docs.


def column_attribute(column: str, unit: str) -> str:
    """The span attribute of a record column in the schema's ``span`` view."""
    return "ollama." + (column.removesuffix("_ms") if unit == "ms" else column)


# -- span events --------------------------------------------------------------------------------------------
EVENT_FIRST_TOKEN = "gen_ai.first_token"
EVENT_EXCEPTION = "exception"  # the SDK's own event name for errors (exception.type / exception.message)

# -- metrics: (name, unit, description) ---------------------------------------------------------------------
CLIENT_OPERATION_DURATION = "gen_ai.client.operation.duration"
CLIENT_TIME_TO_FIRST_CHUNK = "gen_ai.client.operation.time_to_first_chunk"
CLIENT_TIME_PER_OUTPUT_CHUNK = "gen_ai.client.operation.time_per_output_chunk"
CLIENT_TOKEN_USAGE = "gen_ai.client.token.usage"
SERVER_REQUEST_DURATION = "gen_ai.server.request.duration"
SERVER_TIME_TO_FIRST_TOKEN = "gen_ai.server.time_to_first_token"
SERVER_TIME_PER_OUTPUT_TOKEN = "gen_ai.server.time_per_output_token"
OLLAMA_MODEL_LOAD_DURATION = "ollama.model.load.duration"
OLLAMA_REQUESTS_IN_FLIGHT = "ollama.requests.in_flight"
OLLAMA_EXPORT_DROPPED = "ollama.export.dropped"
DROPPED_SIGNAL = "signal"  # attribute of ollama.export.dropped: traces | metrics | records
OLLAMA_LABEL_VALUES_FOLDED = "ollama.export.label_values_folded"
FOLDED_LABEL = "label"  # attribute of ollama.export.label_values_folded: the attribute whose value was folded

# Explicit bucket boundaries (the convention's advice; the SDK's defaults would be milliseconds-shaped).
DURATION_BUCKETS = tuple(round(0.01 * 2**i, 2) for i in range(14))  # 0.01, 0.02, 0.04, ... 81.92 s
TOKEN_BUCKETS = tuple(float(4**i) for i in range(14))  # 1, 4, 16, ... 4^13
FIRST_TOKEN_BUCKETS = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0)
PER_TOKEN_BUCKETS = (0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5)

# name -> (unit, description, bucket boundaries)
HISTOGRAMS: dict[str, tuple[str, str, tuple[float, ...]]] = {
    CLIENT_OPERATION_DURATION: (
        "s",
        "GenAI operation duration, first request byte to last response byte.",
        DURATION_BUCKETS,
    ),
    CLIENT_TIME_TO_FIRST_CHUNK: (
        "s",
        "Time to the first chunk carrying a token, seen at the wire.",
        FIRST_TOKEN_BUCKETS,
    ),
    CLIENT_TIME_PER_OUTPUT_CHUNK: ("s", "Mean time between token-bearing chunks after the first.", PER_TOKEN_BUCKETS),
    CLIENT_TOKEN_USAGE: ("{token}", "Number of input and output tokens used.", TOKEN_BUCKETS),
    SERVER_REQUEST_DURATION: ("s", "Ollama's total_duration.", DURATION_BUCKETS),
    SERVER_TIME_TO_FIRST_TOKEN: (
        "s",
        "Ollama's time to the first token: total_duration − eval_duration.",
        FIRST_TOKEN_BUCKETS,
    ),
    SERVER_TIME_PER_OUTPUT_TOKEN: ("s", "Ollama's eval_duration / eval_count.", PER_TOKEN_BUCKETS),
    OLLAMA_MODEL_LOAD_DURATION: ("s", "Ollama's load_duration (model load or wait for a runner).", DURATION_BUCKETS),
}

# What each metric is called on a Prometheus /metrics page (the SDK's exporter adds the unit and _total).
PROMETHEUS_NAMES: dict[str, str] = {
    CLIENT_OPERATION_DURATION: "gen_ai_client_operation_duration_seconds",
    CLIENT_TIME_TO_FIRST_CHUNK: "gen_ai_client_operation_time_to_first_chunk_seconds",
    CLIENT_TIME_PER_OUTPUT_CHUNK: "gen_ai_client_operation_time_per_output_chunk_seconds",
    CLIENT_TOKEN_USAGE: "gen_ai_client_token_usage",
    SERVER_REQUEST_DURATION: "gen_ai_server_request_duration_seconds",
    SERVER_TIME_TO_FIRST_TOKEN: "gen_ai_server_time_to_first_token_seconds",
    SERVER_TIME_PER_OUTPUT_TOKEN: "gen_ai_server_time_per_output_token_seconds",
    OLLAMA_MODEL_LOAD_DURATION: "ollama_model_load_duration_seconds",
    OLLAMA_REQUESTS_IN_FLIGHT: "ollama_requests_in_flight",
    OLLAMA_EXPORT_DROPPED: "ollama_export_dropped_total",
    OLLAMA_LABEL_VALUES_FOLDED: "ollama_export_label_values_folded_total",
}
