"""One error category per failed request, the way the findings and the errors chart count them."""

from __future__ import annotations

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
SERVER_ERROR = "server_error"
BAD_REQUEST = "bad_request"
ERROR_MID_STREAM = "error_mid_stream"
UPSTREAM_FAILED = "upstream_failed"
CLIENT_ABORTED = "client_aborted"

# In the order the errors chart stacks them.
CATEGORIES: tuple[str, ...] = (
    OUT_OF_MEMORY,
    SERVER_ERROR,
    ERROR_MID_STREAM,
    UPSTREAM_FAILED,
    MODEL_NOT_FOUND,
    CONTEXT_EXCEEDED,
    BAD_REQUEST,
    CLIENT_ABORTED,
)

# Lower-cased fragments of Ollama's (and llama.cpp's) messages.
_OOM_TEXT = ("requires more system memory", "out of memory", "insufficient memory", "cudamalloc failed", "oom")
_CONTEXT_TEXT = ("context length", "context window", "exceeds maximum context", "input length exceeds", "num_ctx")


def error_category(status: int | None, error: str | None, flags: Sequence[str]) -> str | None:
    """The category of what went wrong with a request, or None when nothing did.

    The message decides first (an out-of-memory error mid-stream is ``out_of_memory``), then the flags, then
    the status: 404/"not found" → ``model_not_found``, other 4xx → ``bad_request``, 5xx or an error on a 200 →
    ``server_error``. A proxy shutdown mid-stream is not the server's fault and counts as no error.
    """
    if FLAG_CLIENT_ABORTED in flags:
        return CLIENT_ABORTED
    text = (error or "").lower()
    if text:
        if any(fragment in text for fragment in _OOM_TEXT):
            return OUT_OF_MEMORY
        if any(fragment in text for fragment in _CONTEXT_TEXT):
            return CONTEXT_EXCEEDED
        if status == 404 or ("model" in text and "not found" in text):
            return MODEL_NOT_FOUND
    if FLAG_UPSTREAM_FAILED in flags or (FLAG_NO_RESPONSE in flags and FLAG_SHUTDOWN not in flags):
        return UPSTREAM_FAILED
    if FLAG_ERROR_MID_STREAM in flags:
        return ERROR_MID_STREAM
    if status == 404:
        return MODEL_NOT_FOUND
    if status is not None and 400 <= status < 500:
        return BAD_REQUEST
    if (status is not None and status >= 500) or text:
        return SERVER_ERROR
    return None
