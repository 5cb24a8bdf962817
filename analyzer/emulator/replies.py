"""Complete (non-streamed) replies: JSON bodies and the native and OpenAI error shapes."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from analyzer.emulator.http11 import ResponseWriter
from analyzer.emulator.pacing import Fault, Timing, paced_tokens
from analyzer.emulator.plan import ReplyPlan
from analyzer.emulator.wire import go_json

JSON_TYPE = "application/json; charset=utf-8"
# Ollama's OpenAI middleware writes with json.NewEncoder: no charset, and a newline after the object (v0.24.0).
OPENAI_JSON_TYPE = "application/json"
NDJSON_TYPE = "application/x-ndjson"
SSE_TYPE = "text/event-stream"

_FAIL_MESSAGES = {
    500: "emulated internal server error",
    503: "server busy, please try again.  maximum pending requests exceeded",
}


class RequestFailed(Exception):
    """Raised by a handler to answer with an error status before any byte of the body was sent."""

    def __init__(self, status: int, message: str, stream_framed: bool = False) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        # Ollama found the error inside its streaming response writer: `application/json` (no charset), chunked.
        self.stream_framed = stream_framed


def fail_message(status: int) -> str:
    """The error text for an injected ``fail_status``."""
    return _FAIL_MESSAGES.get(status, f"emulated HTTP {status}")


def openai_error_body(status: int, message: str) -> dict[str, Any]:
    """Ollama's OpenAI-compatible error object for ``status``."""
    kind = {400: "invalid_request_error", 404: "not_found_error"}.get(status, "api_error")
    return {"error": {"message": message, "type": kind, "param": None, "code": None}}


async def send_json(response: ResponseWriter, value: Any, status: int = 200) -> None:
    """Send one JSON object the way gin's ``c.JSON`` does."""
    await response.send(status, JSON_TYPE, go_json(value))


async def send_openai_json(response: ResponseWriter, value: Any, status: int = 200) -> None:
    """Send one JSON object the way Ollama's OpenAI middleware does (``json.NewEncoder``)."""
    await response.send(status, OPENAI_JSON_TYPE, go_json(value) + b"\n")


async def send_error(response: ResponseWriter, error: RequestFailed, openai: bool) -> None:
    """Send ``error`` in the native (``{"error": "..."}``) or OpenAI shape."""
    if openai:
        await send_openai_json(response, openai_error_body(error.status, error.message), error.status)
    elif error.stream_framed:
        response.start_stream(error.status, OPENAI_JSON_TYPE)
        await response.write_chunk(go_json({"error": error.message}))
        await response.end_stream()
    else:
        await send_json(response, {"error": error.message}, error.status)


def parse_body(raw: bytes) -> dict[str, Any]:
    """The request's JSON object, or RequestFailed(400)."""
    if not raw.strip():
        raise RequestFailed(400, "missing request body")
    try:
        value = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RequestFailed(400, f"invalid JSON: {exc}") from None
    if not isinstance(value, Mapping):
        raise RequestFailed(400, "request body must be a JSON object")
    return dict(value)


async def pace_whole_reply(plan: ReplyPlan, timing: Timing, response: ResponseWriter) -> bool:
    """Spend a non-streamed reply's generation time; False when a fault closed the connection.

    Raises RequestFailed for an error fault (a non-streamed reply reports it as a 500).
    """
    async for event in paced_tokens(plan, timing):
        if isinstance(event, Fault):
            if event.kind == "close":
                response.abort()
                return False
            raise RequestFailed(500, event.message)
    return True
