"""OpenAI Responses (``/v1/responses``): what its typed SSE events and its JSON body say.

Read from Ollama's ``openai/responses.go`` (``ResponsesStreamConverter``, ``ToResponse``). Every event's data
carries ``type`` and ``sequence_number``: ``response.created``, ``response.in_progress``, then per output item
``response.output_item.added`` … ``response.output_item.done`` with ``response.reasoning_summary_text.delta``
(thinking), ``response.output_text.delta`` (answer) or ``response.function_call_arguments.delta`` (a tool call)
in between, and last ``response.completed`` (or ``response.incomplete`` / ``response.failed``; a bare ``error``
event is OpenAI's). The usage in the final response is ``input_tokens`` / ``output_tokens``.

Ollama writes ``input_tokens_details.cached_tokens: 0`` and ``output_tokens_details.reasoning_tokens: 0`` as
constants (not measured, "TODO: wire through the actual values"): they are never read as counts.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from analyzer.protocol.endpoints import API_OPENAI
from analyzer.protocol.token_kinds import TOKEN_TOOL

if TYPE_CHECKING:
    from analyzer.protocol.response_content import ResponseContent

_FINAL_EVENTS = ("response.completed", "response.incomplete", "response.failed")
_THINKING_DELTAS = ("response.reasoning_summary_text.delta", "response.reasoning_text.delta")


def failure_message(value: Any) -> str | None:
    """The ``message`` of a Responses error object (``{"code", "message"}``) or ``error`` event."""
    if isinstance(value, dict) and isinstance(value.get("message"), str) and value["message"]:
        return str(value["message"])
    return None


def _function_call(item: dict[str, Any]) -> dict[str, Any]:
    return {key: item[key] for key in ("type", "call_id", "name", "arguments") if key in item}


def _final(content: ResponseContent, response: dict[str, Any]) -> None:
    """The closing response object (of ``response.completed`` or a non-streamed body): status and usage."""
    status = response.get("status")
    details = response.get("incomplete_details")
    reason = details.get("reason") if isinstance(details, dict) else None
    if isinstance(reason, str) and reason:
        content.done_reason = reason
    elif isinstance(status, str) and status:
        content.done_reason = status
    usage = response.get("usage")
    if isinstance(usage, dict):
        content.set_counter("prompt_eval_count", usage.get("input_tokens"))
        content.set_counter("eval_count", usage.get("output_tokens"))
    if status == "failed" or response.get("error") is not None:
        content.failed = True
        content.error = failure_message(response.get("error")) or content.error or "response failed"
    if isinstance(response.get("model"), str):
        content.model = response["model"]
    content.done = True


def _whole_response(content: ResponseContent, obj: dict[str, Any]) -> int:
    token = 0
    output = obj.get("output")
    for item in output if isinstance(output, list) else []:
        if not isinstance(item, dict):
            continue
        kind = item.get("type")
        if kind == "reasoning":
            summary = item.get("summary")
            for part in summary if isinstance(summary, list) else []:
                if isinstance(part, dict) and isinstance(part.get("text"), str):
                    token |= content.store_thinking(part["text"])
        elif kind == "message":
            parts = item.get("content")
            for part in parts if isinstance(parts, list) else []:
                if isinstance(part, dict) and part.get("type") == "output_text" and isinstance(part.get("text"), str):
                    token |= content.store_text(part["text"])
        elif kind == "function_call":
            content.tool_calls.append(_function_call(item))
            token |= TOKEN_TOOL
    _final(content, obj)
    return token


def _stream_event(content: ResponseContent, kind: str, obj: dict[str, Any]) -> int:
    delta = obj.get("delta")
    if kind == "response.output_text.delta" and isinstance(delta, str):
        return content.store_text(delta)
    if kind in _THINKING_DELTAS and isinstance(delta, str):
        return content.store_thinking(delta)
    item_id = obj.get("item_id")
    if kind == "response.function_call_arguments.delta" and isinstance(delta, str) and delta:
        call, pieces = content.stream_tools.get(item_id), content.stream_tool_args.get(item_id)
        if call is None or pieces is None:
            return 0
        pieces.append(delta)
        call["arguments"] = "".join(pieces)
        return TOKEN_TOOL
    item = obj.get("item")
    if kind == "response.output_item.added" and isinstance(item, dict) and item.get("type") == "function_call":
        call = _function_call(item)
        content.tool_calls.append(call)
        content.stream_tools[item.get("id")] = call
        content.stream_tool_args[item.get("id")] = []
    elif kind == "response.output_item.done" and isinstance(item, dict) and item.get("type") == "function_call":
        call = content.stream_tools.pop(item.get("id"), None)
        content.stream_tool_args.pop(item.get("id"), None)
        if call is not None and isinstance(item.get("arguments"), str):
            call["arguments"] = item["arguments"]
    elif kind in _FINAL_EVENTS and isinstance(obj.get("response"), dict):
        _final(content, obj["response"])
    elif kind in ("response.created", "response.in_progress") and isinstance(obj.get("response"), dict):
        model = obj["response"].get("model")
        if isinstance(model, str):
            content.model = model
    return 0


def apply_responses(content: ResponseContent, obj: dict[str, Any]) -> int:
    """Apply one Responses event (or the whole non-streamed response); the kinds of non-empty token it carried."""
    content.note_preamble(obj, API_OPENAI)
    content.detected_kind = content.detected_kind or "responses"
    kind = obj.get("type")
    if kind == "error":
        content.failed = True
        content.error = failure_message(obj) or content.error or "error event"
        return 0
    if obj.get("object") == "response":
        return _whole_response(content, obj)
    if obj.get("error") is not None:  # an error body before any stream ({"error": {"message": …}})
        return 0
    if isinstance(kind, str):
        return _stream_event(content, kind, obj)
    return 0
