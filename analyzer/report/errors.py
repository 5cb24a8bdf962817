"""One error category per failed request, the way the findings and the errors chart count them.

Categories come from the messages Ollama actually sends (its ``server/``, ``llm/``, ``runner/`` and ``api/`` source,
v0.24.0 and HEAD; listed in docs/report.md "Error categories"). Each is matched on the message's *shape* — an
anchored pattern or an exact text — never on a word anywhere in it: the model's name is part of many messages
(``model "bloom:560m" not found``), and a name can contain any word. The same texts arrive through the OpenAI
(``{"error": {"message": …}}``), Anthropic (``{"type": "error", "error": {"type", "message"}}``) and Responses
(``response.failed`` / ``error`` events) wrappers, which the recorder unwraps into ``error``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from analyzer.protocol.record import (
    FLAG_CLIENT_ABORTED,
    FLAG_ERROR_MID_STREAM,
    FLAG_NO_RESPONSE,
    FLAG_SHUTDOWN,
    FLAG_UPSTREAM_FAILED,
)

MODEL_NOT_FOUND = "model_not_found"
OUT_OF_MEMORY = "out_of_memory"
CONTEXT_EXCEEDED = "context_exceeded"
SERVER_BUSY = "server_busy"
SERVER_ERROR = "server_error"
BAD_REQUEST = "bad_request"
ERROR_MID_STREAM = "error_mid_stream"
UPSTREAM_FAILED = "upstream_failed"
CLIENT_ABORTED = "client_aborted"

# In the order the errors chart stacks them.
CATEGORIES: tuple[str, ...] = (
    OUT_OF_MEMORY,
    SERVER_ERROR,
    SERVER_BUSY,
    ERROR_MID_STREAM,
    UPSTREAM_FAILED,
    MODEL_NOT_FOUND,
    CONTEXT_EXCEEDED,
    BAD_REQUEST,
    CLIENT_ABORTED,
)

_QUOTED = r"""(?:"(?:[^"\\]|\\.)*"|'[^']*')"""
# server/routes.go handleScheduleError (404): model "X" not found, try pulling it first; the handlers' own
# look-ups: model 'X' not found; model "X" not found (create's source).
_NOT_FOUND = re.compile(rf"^model {_QUOTED} not found(?:, try pulling it first)?$")
# server/sched.go ErrMaxQueue (503; Anthropic wraps it as overloaded_error).
_BUSY = re.compile(r"^server busy, please try again\.\s+maximum pending requests exceeded$")
# runner/*/runner.go errorInputTooLong (and llm/llama_server.go at HEAD); server/routes.go chatPrompt truncation.
_CONTEXT = re.compile(
    r"^(?:the input length exceeds the context length"
    r"|input exceeds maximum context length and cannot be truncated further"
    r"|input after truncation exceeds maximum context length)$"
)
# llm/server.go: the scheduler's memory check; ml/device.go ErrNoMem.
_OOM = re.compile(
    r"^(?:model requires more system memory \([^()]*\) than is available \([^()]*\)"
    r"|model requires more system memory than is currently available\b.*"
    r"|insufficient memory - required allocations\b.*)$",
    re.DOTALL,
)
# llm/server.go: a runner that died; what follows is the runner's last error line (llm/status.go prefixes).
_RUNNER_DIED = re.compile(
    r"^llama runner process (?:has terminated|no longer running)(?::\s*-?\d+)?:?\s*(?P<cause>.*)$", re.DOTALL
)
_RUNNER_OOM = re.compile(
    r"^(?:cudaMalloc failed: out of memory|CUDA error: out of memory|ROCm error: out of memory"
    r"|out of memory|insufficient memory\b|error: out of memory|ggml_backend_\w+_buffer_type_alloc_buffer: "
    r"allocating [\d.]+ MiB on device \d+: cuda ?Malloc failed: out of memory)",
    re.IGNORECASE,
)


_NO_ROUTE = "404 page not found"  # gin's answer for a path Ollama does not serve: not a model


def message_category(error: str | None) -> str | None:
    """The category Ollama's message alone says (None when it says none of them): its shape, not its words."""
    text = (error or "").strip()
    if not text:
        return None
    if _NOT_FOUND.match(text):
        return MODEL_NOT_FOUND
    if _BUSY.match(text):
        return SERVER_BUSY
    if _CONTEXT.match(text):
        return CONTEXT_EXCEEDED
    if _OOM.match(text):
        return OUT_OF_MEMORY
    died = _RUNNER_DIED.match(text)
    if died and _RUNNER_OOM.match(died.group("cause").strip()):
        return OUT_OF_MEMORY
    return None


def error_category(status: int | None, error: str | None, flags: Sequence[str]) -> str | None:
    """The category of what went wrong with a request, or None when nothing did.

    The message's shape decides first (an out-of-memory error mid-stream is ``out_of_memory``), then the flags,
    then the status: 404 → ``model_not_found``, 503 → ``server_busy``, other 4xx → ``bad_request``, 5xx or an
    error on a 200 → ``server_error``. A proxy shutdown mid-stream is not the server's fault and counts as no error.
    """
    if FLAG_CLIENT_ABORTED in flags:
        return CLIENT_ABORTED
    by_message = message_category(error)
    if by_message:
        return by_message
    if FLAG_UPSTREAM_FAILED in flags or (FLAG_NO_RESPONSE in flags and FLAG_SHUTDOWN not in flags):
        return UPSTREAM_FAILED
    if FLAG_ERROR_MID_STREAM in flags:
        return ERROR_MID_STREAM
    if status == 404 and (error or "").strip() != _NO_ROUTE:
        return MODEL_NOT_FOUND
    if status == 503:
        return SERVER_BUSY
    if status is not None and 400 <= status < 500:
        return BAD_REQUEST
    if (status is not None and status >= 500) or (error or "").strip():
        return SERVER_ERROR
    return None
