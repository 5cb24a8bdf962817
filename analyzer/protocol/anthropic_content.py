"""Anthropic Messages (``/v1/messages``): what its SSE events and its JSON body say.

Read from Ollama's ``anthropic/anthropic.go`` (``StreamConverter.Process``, ``ToMessagesResponse``) and
``middleware/anthropic.go``. A stream is ``message_start``, then per content block ``content_block_start`` /
``content_block_delta`` (``thinking_delta``, ``text_delta``, ``input_json_delta``) / ``content_block_stop``, then
``message_delta`` (``stop_reason`` and the usage) and ``message_stop``; ``ping`` and ``error`` may come in between.
Every event's data carries its ``type``, so the ``event:`` lines are not needed.

Counts come from ``message_delta`` only: ``message_start``'s ``input_tokens`` is Ollama's estimate from the
request (``EstimateInputTokens``, characters / 4) whenever the first chunk has no count — not a measurement.
"""

from __future__ import annotations

import contextlib
import json
from typing import TYPE_CHECKING, Any

from analyzer.protocol.endpoints import API_ANTHROPIC
from analyzer.protocol.token_kinds import TOKEN_TOOL

if TYPE_CHECKING:
    from analyzer.protocol.response_content import ResponseContent


def _usage(content: ResponseContent, usage: Any) -> None:
    if not isinstance(usage, dict):
        return
    content.set_counter("prompt_eval_count", usage.get("input_tokens"))
    content.set_counter("eval_count", usage.get("output_tokens"))
    # Only servers with cached-token reporting write it (Ollama's Usage had no such field up to v0.33).
    content.set_counter("prompt_eval_cached_count", usage.get("cache_read_input_tokens"))


def _tool_use(block: dict[str, Any]) -> dict[str, Any]:
    return {key: block[key] for key in ("type", "id", "name", "input") if key in block}


def _block_start(content: ResponseContent, index: Any, block: dict[str, Any]) -> int:
    kind = block.get("type")
    if kind in ("tool_use", "server_tool_use"):
        call = _tool_use(block)
        content.tool_calls.append(call)
        content.stream_tools[index] = call
        content.stream_tool_args[index] = []
        return 0
    if kind == "text" and isinstance(block.get("text"), str):
        return content.store_text(block["text"])
    if kind == "thinking" and isinstance(block.get("thinking"), str):
        return content.store_thinking(block["thinking"])
    return 0


def _block_delta(content: ResponseContent, index: Any, delta: dict[str, Any]) -> int:
    kind = delta.get("type")
    if kind == "text_delta" and isinstance(delta.get("text"), str):
        return content.store_text(delta["text"])
    if kind == "thinking_delta" and isinstance(delta.get("thinking"), str):
        return content.store_thinking(delta["thinking"])
    if kind == "input_json_delta":
        piece = delta.get("partial_json")
        call, pieces = content.stream_tools.get(index), content.stream_tool_args.get(index)
        if isinstance(piece, str) and piece and call is not None and pieces is not None:
            pieces.append(piece)
            call["input"] = "".join(pieces)  # parsed into an object when the block stops
            return TOKEN_TOOL
    return 0


def _block_stop(content: ResponseContent, index: Any) -> None:
    call, pieces = content.stream_tools.pop(index, None), content.stream_tool_args.pop(index, None)
    if call is None or not pieces:
        return
    with contextlib.suppress(ValueError, RecursionError):  # unparsable: kept as the text the stream sent
        call["input"] = json.loads("".join(pieces))


def _whole_message(content: ResponseContent, obj: dict[str, Any]) -> int:
    token = 0
    blocks = obj.get("content")
    for block in blocks if isinstance(blocks, list) else []:
        if not isinstance(block, dict):
            continue
        kind = block.get("type")
        if kind == "thinking" and isinstance(block.get("thinking"), str):
            token |= content.store_thinking(block["thinking"])
        elif kind == "text" and isinstance(block.get("text"), str):
            token |= content.store_text(block["text"])
        elif kind in ("tool_use", "server_tool_use"):
            content.tool_calls.append(_tool_use(block))
            token |= TOKEN_TOOL
    reason = obj.get("stop_reason")
    if isinstance(reason, str) and reason:
        content.done_reason = reason
    _usage(content, obj.get("usage"))
    content.done = True
    return token


def apply_anthropic(content: ResponseContent, obj: dict[str, Any]) -> int:
    """Apply one Anthropic event (or the whole non-streamed message); the kinds of non-empty token it carried."""
    content.note_preamble(obj, API_ANTHROPIC)
    content.detected_kind = content.detected_kind or "messages"
    kind = obj.get("type")
    if kind == "error" or obj.get("error") is not None:
        content.failed = True
        return 0
    index = obj.get("index")
    if kind == "content_block_delta" and isinstance(obj.get("delta"), dict):
        return _block_delta(content, index, obj["delta"])
    if kind == "content_block_start" and isinstance(obj.get("content_block"), dict):
        return _block_start(content, index, obj["content_block"])
    if kind == "content_block_stop":
        _block_stop(content, index)
    elif kind == "message_start":
        message = obj.get("message")
        if isinstance(message, dict) and isinstance(message.get("model"), str):
            content.model = message["model"]
    elif kind == "message_delta":
        delta = obj.get("delta")
        reason = delta.get("stop_reason") if isinstance(delta, dict) else None
        if isinstance(reason, str) and reason:
            content.done_reason = reason
        _usage(content, obj.get("usage"))
    elif kind == "message_stop":
        content.done = True
    elif kind == "message":
        return _whole_message(content, obj)
    return 0
