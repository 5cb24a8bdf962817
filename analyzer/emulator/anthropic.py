"""``POST /v1/messages``: the Anthropic Messages API as Ollama's ``middleware/anthropic.go`` serves it (v0.24.0).

Validation and its messages (``model is required``, ``max_tokens is required and must be positive``,
``messages is required``), errors as ``{"type":"error","error":{"type","message"},"request_id"}`` with the type
chosen by status (``anthropic.NewError``), and the stream of ``anthropic.StreamConverter``: one ``event:`` +
``data:`` pair per flush — ``message_start`` (usage.input_tokens is Ollama's estimate, characters / 4, because
the first chunk has no count), a ``thinking`` block, a ``text`` block, one ``tool_use`` block per call, then
``message_delta`` (stop_reason, the real usage) and ``message_stop``. Like Ollama, it sends no ``ping`` and, when
the chat handler fails mid-stream, no ``error`` event: the stream just ends without ``message_stop``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from analyzer.emulator.compat import (
    ENCODER_NEWLINE,
    EmittedToolCall,
    chat_steps,
    function_tool,
    generated_whole,
    overrides,
    plan_chat,
    request_json,
    stop_reason,
    tool_calls,
)
from analyzer.emulator.http11 import Request, ResponseWriter
from analyzer.emulator.pacing import Timing
from analyzer.emulator.plan import ReplyPlan
from analyzer.emulator.replies import SSE_TYPE, RequestFailed, send_json
from analyzer.emulator.state import ServerState
from analyzer.emulator.wire import go_json

_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    429: "rate_limit_error",
    503: "overloaded_error",
    529: "overloaded_error",
}


def error_body(status: int, message: str, ident: int) -> dict[str, Any]:
    """``anthropic.NewError``: the error type follows the HTTP status."""
    kind = _ERROR_TYPES.get(status, "api_error")
    return {"type": "error", "error": {"type": kind, "message": message}, "request_id": f"req_{ident:024x}"}


def _system_text(system: Any) -> str:
    if isinstance(system, str):
        return system
    if isinstance(system, list):
        return "".join(b.get("text", "") for b in system if isinstance(b, Mapping) and b.get("type") == "text")
    return ""


def _block_len(block: Any) -> int:
    if not isinstance(block, Mapping):
        return 0
    total = sum(len(block[k]) for k in ("text", "thinking") if isinstance(block.get(k), str))
    if block.get("type") in ("tool_use", "tool_result"):
        total += len(json.dumps(block, separators=(",", ":")))
    return total


def estimate_input_tokens(body: Mapping[str, Any]) -> int:
    """``anthropic.EstimateInputTokens``: request characters / 4 (at least 1 when there is any content)."""
    total = len(_system_text(body.get("system")))
    messages = body.get("messages") or []
    for message in messages:
        if not isinstance(message, Mapping):
            continue
        total += len(str(message.get("role", "")))
        content = message.get("content")
        total += len(content) if isinstance(content, str) else sum(_block_len(b) for b in content or [])
    for tool in body.get("tools") or []:
        if isinstance(tool, Mapping):
            schema = tool.get("input_schema")
            total += len(str(tool.get("name", ""))) + len(str(tool.get("description", "")))
            total += len(json.dumps(schema, separators=(",", ":"))) if schema is not None else 0
    tokens = total // 4
    return 1 if tokens == 0 and (messages or body.get("system") is not None) else tokens


def _chat_body(body: Mapping[str, Any]) -> dict[str, Any]:
    """``anthropic.FromMessagesRequest``, as an OpenAI-chat body the planner reads."""
    messages: list[dict[str, Any]] = []
    system = _system_text(body.get("system"))
    if system:
        messages.append({"role": "system", "content": system})
    for message in body.get("messages") or []:
        if isinstance(message, Mapping):
            messages.append({"role": str(message.get("role", "")).lower(), "content": message.get("content")})
    chat: dict[str, Any] = {"messages": messages, "max_tokens": body.get("max_tokens"), **overrides(body)}
    thinking = body.get("thinking")
    effort = (body.get("output_config") or {}).get("effort") if isinstance(body.get("output_config"), Mapping) else None
    if isinstance(thinking, Mapping) and thinking.get("type") == "enabled":
        chat["reasoning_effort"] = "medium"
    elif not isinstance(thinking, Mapping) and effort in ("low", "medium", "high"):
        chat["reasoning_effort"] = effort
    tools = [t for t in body.get("tools") or [] if isinstance(t, Mapping)]
    if tools:
        chat["tools"] = [function_tool(t.get("name"), t.get("input_schema"), t.get("description")) for t in tools]
    return chat


def _validate(body: Mapping[str, Any]) -> str:
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise RequestFailed(400, "model is required")
    max_tokens = body.get("max_tokens")
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens <= 0:
        raise RequestFailed(400, "max_tokens is required and must be positive")
    if not body.get("messages"):
        raise RequestFailed(400, "messages is required")
    return model


def _stop_reason(plan: ReplyPlan) -> str:
    """``mapStopReason``: tool calls win; stop → end_turn; length → max_tokens."""
    if plan.tool_calls:
        return "tool_use"
    return "max_tokens" if stop_reason(plan) == "length" else "end_turn"


class _Converter:
    """``anthropic.StreamConverter``: the events for each chunk of the chat handler."""

    def __init__(self, ident: str, model: str, estimate: int) -> None:
        self.ident, self.model, self.estimate = ident, model, estimate
        self.first = True
        self.index = 0
        self.thinking_started = self.thinking_done = self.text_started = False

    def start(self) -> list[tuple[str, dict[str, Any]]]:
        if not self.first:
            return []
        self.first = False
        message: dict[str, Any] = {"id": self.ident, "type": "message", "role": "assistant", "model": self.model}
        message |= {"content": [], "usage": {"input_tokens": self.estimate, "output_tokens": 0}}
        return [("message_start", {"type": "message_start", "message": message})]

    def _stop(self) -> tuple[str, dict[str, Any]]:
        return "content_block_stop", {"type": "content_block_stop", "index": self.index}

    def _start(self, block: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        return "content_block_start", {"type": "content_block_start", "index": self.index, "content_block": block}

    def _delta(self, delta: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        return "content_block_delta", {"type": "content_block_delta", "index": self.index, "delta": delta}

    def thinking(self, piece: str) -> list[tuple[str, dict[str, Any]]]:
        events = self.start()
        if self.thinking_done:
            return events
        if not self.thinking_started:
            self.thinking_started = True
            events.append(self._start({"type": "thinking", "thinking": ""}))
        events.append(self._delta({"type": "thinking_delta", "thinking": piece}))
        return events

    def _close_thinking(self, events: list[tuple[str, dict[str, Any]]]) -> None:
        if self.thinking_started and not self.thinking_done:
            self.thinking_done = True
            events.append(self._stop())
            self.index += 1

    def content(self, piece: str) -> list[tuple[str, dict[str, Any]]]:
        events = self.start()
        self._close_thinking(events)
        if not self.text_started:
            self.text_started = True
            events.append(self._start({"type": "text", "text": ""}))
        events.append(self._delta({"type": "text_delta", "text": piece}))
        return events

    def tools(self, calls: list[EmittedToolCall]) -> list[tuple[str, dict[str, Any]]]:
        events = self.start()
        for call in calls:
            self._close_thinking(events)
            if self.text_started:
                events.append(self._stop())
                self.index += 1
                self.text_started = False
            events.append(self._start({"type": "tool_use", "id": call.id, "name": call.name, "input": {}}))
            events.append(self._delta({"type": "input_json_delta", "partial_json": call.arguments_json}))
            events.append(self._stop())
            self.index += 1
        return events

    def done(self, reason: str, prompt_tokens: int, output_tokens: int) -> list[tuple[str, dict[str, Any]]]:
        events = self.start()
        if self.text_started or (self.thinking_started and not self.thinking_done):
            events.append(self._stop())
        usage = {"input_tokens": prompt_tokens, "output_tokens": output_tokens}
        events.append(("message_delta", {"type": "message_delta", "delta": {"stop_reason": reason}, "usage": usage}))
        events.append(("message_stop", {"type": "message_stop"}))
        return events


async def _stream(
    body: Mapping[str, Any], model: str, ident: str, plan: ReplyPlan, timing: Timing, response: ResponseWriter
) -> None:
    converter = _Converter(ident, model, estimate_input_tokens(body))
    calls = tool_calls(plan, ident)
    response.start_stream(200, SSE_TYPE)
    async for step in chat_steps(plan, timing):
        if step.fault is not None:
            if step.fault.kind == "close":
                response.abort()
                return
            # The chat handler's {"error": …} line has no ChatResponse field: the converter writes nothing more.
            for name, data in converter.start():
                await response.write_chunk(f"event: {name}\ndata: ".encode() + go_json(data) + b"\n\n")
            await response.end_stream()
            return
        if step.token is not None:
            kind = step.token.kind
            events = converter.thinking(step.token.text) if kind == "thinking" else converter.content(step.token.text)
        elif step.tools:
            events = converter.tools(calls)
        else:
            events = converter.done(_stop_reason(plan), plan.prompt_tokens, timing.emitted)
        for name, data in events:  # writeSSE flushes after every event
            await response.write_chunk(f"event: {name}\ndata: ".encode() + go_json(data) + b"\n\n")
    await response.end_stream()


def _whole_message(ident: str, model: str, plan: ReplyPlan, timing: Timing) -> dict[str, Any]:
    """``anthropic.ToMessagesResponse``."""
    content: list[dict[str, Any]] = []
    if plan.thinking:
        content.append({"type": "thinking", "thinking": plan.thinking_text})
    if plan.text:
        content.append({"type": "text", "text": plan.text})
    for call in tool_calls(plan, ident):
        content.append({"type": "tool_use", "id": call.id, "name": call.name, "input": call.arguments})
    return {
        "id": ident,
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": _stop_reason(plan),
        "usage": {"input_tokens": plan.prompt_tokens, "output_tokens": timing.emitted},
    }


async def _serve(state: ServerState, body: dict[str, Any], model: str, response: ResponseWriter) -> None:
    plan = plan_chat(state, model, _chat_body(body))
    ident = f"msg_{state.next_id():024x}"
    timing = Timing()
    async with state.runner(plan, timing) as runner, runner.slot():
        if body.get("stream") is True:
            await _stream(body, model, ident, plan, timing, response)
            return
        if not await generated_whole(plan, timing, response):
            return
        reply = go_json(_whole_message(ident, model, plan, timing)) + ENCODER_NEWLINE
        await response.send(200, "application/json", reply)


async def messages(state: ServerState, request: Request, response: ResponseWriter) -> None:
    """``POST /v1/messages``; every error in Anthropic's shape (the middleware's own checks through gin's
    ``c.JSON``, the chat handler's through the writer's ``json.Encoder``)."""
    try:
        body = request_json(request)
        model = _validate(body)
    except RequestFailed as exc:
        await send_json(response, error_body(exc.status, exc.message, state.next_id()), exc.status)
        return
    try:
        await _serve(state, body, model, response)
    except RequestFailed as exc:
        if response.started:
            raise
        encoded = go_json(error_body(exc.status, exc.message, state.next_id())) + ENCODER_NEWLINE
        await response.send(exc.status, "application/json", encoded)
