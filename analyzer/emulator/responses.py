"""``POST /v1/responses``: the OpenAI Responses API as Ollama's ``ResponsesMiddleware`` serves it (v0.24.0).

A zstd request body is decoded first. The stream is ``openai.ResponsesStreamConverter``: ``event: T`` +
``data: JSON`` per event (each flushed), the data a Go map — keys sorted — with ``type`` and a
``sequence_number`` counting from 0: ``response.created``, ``response.in_progress``, a ``reasoning`` item with
``response.reasoning_summary_text.delta`` events, then either a ``message`` item (``response.output_text.delta``)
or one ``function_call`` item per call (its arguments in one ``response.function_call_arguments.delta``), and
``response.completed`` whose usage has Ollama's constant ``cached_tokens: 0`` and ``reasoning_tokens: 0``.
Errors are OpenAI's ``{"error": {"message", "type", …}}``; a mid-stream failure of the chat handler just ends
the stream (the converter has nothing to say about it).
"""

from __future__ import annotations

import json
import time
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
    tool_calls,
)
from analyzer.emulator.http11 import Request, ResponseWriter
from analyzer.emulator.pacing import Timing
from analyzer.emulator.plan import THINK_LEVELS, ReplyPlan
from analyzer.emulator.replies import SSE_TYPE, RequestFailed, openai_error_body, send_json
from analyzer.emulator.state import ServerState
from analyzer.emulator.wire import go_json

Event = tuple[str, dict[str, Any]]


def _go_map_json(value: Any) -> bytes:
    """``json.Marshal`` of a ``map[string]any``: keys sorted, Go's escapes."""
    return go_json(json.loads(json.dumps(value, sort_keys=True)))


def _parts_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            str(p.get("text", ""))
            for p in content
            if isinstance(p, Mapping) and p.get("type") in ("input_text", "output_text", "text")
        )
    return ""


def _chat_body(body: Mapping[str, Any]) -> dict[str, Any]:
    """``openai.FromResponsesRequest``, as an OpenAI-chat body the planner reads."""
    messages: list[dict[str, Any]] = []
    instructions = body.get("instructions")
    if isinstance(instructions, str) and instructions:
        messages.append({"role": "system", "content": instructions})
    raw = body.get("input")
    if isinstance(raw, str):
        messages.append({"role": "user", "content": raw})
    for item in raw if isinstance(raw, list) else []:
        if not isinstance(item, Mapping):
            continue
        if item.get("type") == "function_call_output":
            messages.append({"role": "tool", "content": str(item.get("output", ""))})
        elif "role" in item:
            messages.append({"role": str(item["role"]), "content": _parts_text(item.get("content"))})
    chat: dict[str, Any] = {"messages": messages, **overrides(body)}
    if body.get("max_output_tokens") is not None:
        chat["max_tokens"] = body["max_output_tokens"]
    reasoning = body.get("reasoning")
    effort = reasoning.get("effort") if isinstance(reasoning, Mapping) else None
    if effort in THINK_LEVELS:
        chat["reasoning_effort"] = effort
    tools = [t for t in body.get("tools") or [] if isinstance(t, Mapping) and t.get("type") == "function"]
    if tools:
        chat["tools"] = [function_tool(t.get("name"), t.get("parameters"), t.get("description")) for t in tools]
    return chat


class _Converter:
    """``openai.ResponsesStreamConverter``."""

    def __init__(self, ident: str, item_id: str, body: Mapping[str, Any]) -> None:
        self.ident, self.item_id, self.body = ident, item_id, body
        self.sequence = 0
        self.first = True
        self.output_index = 0
        self.reasoning_id = ""
        self.reasoning_started = self.reasoning_done = self.content_started = self.tools_sent = False
        self.thinking = ""
        self.text = ""
        self.tool_items: list[dict[str, Any]] = []

    def event(self, kind: str, **data: Any) -> Event:
        data |= {"type": kind, "sequence_number": self.sequence}
        self.sequence += 1
        return kind, data

    def response(self, status: str, output: list[Any], usage: dict[str, Any] | None) -> dict[str, Any]:
        body = self.body
        tools = [
            {k: t.get(k) for k in ("type", "name", "description", "strict", "parameters")}
            for t in body.get("tools") or []
            if isinstance(t, Mapping)
        ]
        reasoning = body.get("reasoning")
        effort = reasoning.get("effort") if isinstance(reasoning, Mapping) else None
        summary = reasoning.get("summary") if isinstance(reasoning, Mapping) else None
        return {
            "id": self.ident,
            "object": "response",
            "created_at": int(time.time()),
            "completed_at": None,
            "status": status,
            "incomplete_details": None,
            "model": body.get("model"),
            "previous_response_id": None,
            "instructions": body.get("instructions") or None,
            "output": output,
            "error": None,
            "tools": tools,
            "tool_choice": "auto",
            "truncation": body.get("truncation") or "disabled",
            "parallel_tool_calls": True,
            "text": {"format": {"type": "text"}},
            "top_p": body.get("top_p", 1.0) if body.get("top_p") is not None else 1.0,
            "presence_penalty": 0,
            "frequency_penalty": 0,
            "top_logprobs": 0,
            "temperature": body.get("temperature") if body.get("temperature") is not None else 1.0,
            "reasoning": {"effort": effort, "summary": summary} if effort or summary else None,
            "usage": usage,
            "max_output_tokens": body.get("max_output_tokens"),
            "max_tool_calls": None,
            "store": False,
            "background": bool(body.get("background")),
            "service_tier": "default",
            "metadata": {},
            "safety_identifier": None,
            "prompt_cache_key": None,
        }

    def start(self) -> list[Event]:
        if not self.first:
            return []
        self.first = False
        return [
            self.event("response.created", response=self.response("in_progress", [], None)),
            self.event("response.in_progress", response=self.response("in_progress", [], None)),
        ]

    def thinking_piece(self, piece: str, number: int) -> list[Event]:
        events = self.start()
        if not self.reasoning_started:
            self.reasoning_started = True
            self.reasoning_id = f"rs_{number}"
            item = {"id": self.reasoning_id, "type": "reasoning", "summary": []}
            events.append(self.event("response.output_item.added", output_index=self.output_index, item=item))
        self.thinking += piece
        events.append(
            self.event(
                "response.reasoning_summary_text.delta",
                item_id=self.reasoning_id,
                output_index=self.output_index,
                summary_index=0,
                delta=piece,
            )
        )
        return events

    def _finish_reasoning(self) -> list[Event]:
        if not self.reasoning_started or self.reasoning_done:
            return []
        self.reasoning_done = True
        summary = [{"type": "summary_text", "text": self.thinking}]
        item = {"id": self.reasoning_id, "type": "reasoning", "summary": summary, "encrypted_content": self.thinking}
        events = [
            self.event(
                "response.reasoning_summary_text.done",
                item_id=self.reasoning_id,
                output_index=self.output_index,
                summary_index=0,
                text=self.thinking,
            ),
            self.event("response.output_item.done", output_index=self.output_index, item=item),
        ]
        self.output_index += 1
        return events

    def content_piece(self, piece: str) -> list[Event]:
        events = self.start()
        if self.tools_sent:
            return events
        events += self._finish_reasoning()
        if not self.content_started:
            self.content_started = True
            item = {"id": self.item_id, "type": "message", "status": "in_progress", "role": "assistant", "content": []}
            part = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
            events.append(self.event("response.output_item.added", output_index=self.output_index, item=item))
            events.append(
                self.event(
                    "response.content_part.added",
                    item_id=self.item_id,
                    output_index=self.output_index,
                    content_index=0,
                    part=part,
                )
            )
        self.text += piece
        events.append(
            self.event(
                "response.output_text.delta",
                item_id=self.item_id,
                output_index=self.output_index,
                content_index=0,
                delta=piece,
                logprobs=[],
            )
        )
        return events

    def tools(self, calls: list[EmittedToolCall], number: int) -> list[Event]:
        events = self.start() + self._finish_reasoning()
        for i, call in enumerate(calls):
            item_id = f"fc_{number}_{i}"
            index = self.output_index + i
            item = {"id": item_id, "type": "function_call", "status": "in_progress", "call_id": call.id}
            item |= {"name": call.name, "arguments": ""}
            done_item = {**item, "status": "completed", "arguments": call.arguments_json}
            self.tool_items.append(done_item)
            events.append(self.event("response.output_item.added", output_index=index, item=item))
            if call.arguments_json:
                events.append(
                    self.event(
                        "response.function_call_arguments.delta",
                        item_id=item_id,
                        output_index=index,
                        delta=call.arguments_json,
                    )
                )
            events.append(
                self.event(
                    "response.function_call_arguments.done",
                    item_id=item_id,
                    output_index=index,
                    arguments=call.arguments_json,
                )
            )
            events.append(self.event("response.output_item.done", output_index=index, item=done_item))
        self.tools_sent = True
        return events

    def _message_item(self) -> dict[str, Any]:
        part = {"type": "output_text", "text": self.text, "annotations": [], "logprobs": []}
        return {"id": self.item_id, "type": "message", "status": "completed", "role": "assistant", "content": [part]}

    def done(self, prompt_tokens: int, output_tokens: int) -> list[Event]:
        events = self.start() + self._finish_reasoning()
        if not self.tools_sent and self.content_started:
            part = {"type": "output_text", "text": self.text, "annotations": [], "logprobs": []}
            events += [
                self.event(
                    "response.output_text.done",
                    item_id=self.item_id,
                    output_index=self.output_index,
                    content_index=0,
                    text=self.text,
                    logprobs=[],
                ),
                self.event(
                    "response.content_part.done",
                    item_id=self.item_id,
                    output_index=self.output_index,
                    content_index=0,
                    part=part,
                ),
                self.event("response.output_item.done", output_index=self.output_index, item=self._message_item()),
            ]
        output: list[Any] = []
        if self.reasoning_started:
            summary = [{"type": "summary_text", "text": self.thinking}]
            output.append(
                {"id": self.reasoning_id, "type": "reasoning", "summary": summary, "encrypted_content": self.thinking}
            )
        if self.tool_items:
            output += self.tool_items
        elif self.content_started:
            output.append(self._message_item())
        usage = {
            "input_tokens": prompt_tokens,
            "output_tokens": output_tokens,
            "total_tokens": prompt_tokens + output_tokens,
            "input_tokens_details": {"cached_tokens": 0},  # Ollama's TODO constants
            "output_tokens_details": {"reasoning_tokens": 0},
        }
        final = self.response("completed", output, usage)
        final["completed_at"] = int(time.time())
        events.append(self.event("response.completed", response=final))
        return events


async def _stream(
    state: ServerState,
    converter: _Converter,
    calls: list[EmittedToolCall],
    plan: ReplyPlan,
    timing: Timing,
    response: ResponseWriter,
) -> None:
    response.start_stream(200, SSE_TYPE)
    async for step in chat_steps(plan, timing):
        if step.fault is not None:
            if step.fault.kind == "close":
                response.abort()
                return
            events = converter.start()  # the {"error": …} line converts to nothing more
        elif step.token is not None and step.token.kind == "thinking":
            events = converter.thinking_piece(step.token.text, state.next_id())
        elif step.token is not None:
            events = converter.content_piece(step.token.text)
        elif step.tools:
            events = converter.tools(calls, state.next_id())
        else:
            events = converter.done(plan.prompt_tokens, timing.emitted)
        for name, data in events:
            await response.write_chunk(f"event: {name}\ndata: ".encode() + _go_map_json(data) + b"\n\n")
        if step.fault is not None:
            break
    await response.end_stream()


def _whole_response(
    converter: _Converter, calls: list[EmittedToolCall], plan: ReplyPlan, timing: Timing
) -> dict[str, Any]:
    """``openai.ToResponse``: reasoning item, then the function calls or else the message."""
    output: list[dict[str, Any]] = []
    if plan.thinking:
        summary = [{"type": "summary_text", "text": plan.thinking_text}]
        reasoning = {"id": f"rs_{converter.ident}", "type": "reasoning", "summary": summary}
        output.append(reasoning | {"encrypted_content": plan.thinking_text})
    for i, call in enumerate(calls):
        item = {"id": f"fc_{converter.ident}_{i}", "type": "function_call", "status": "completed"}
        output.append(item | {"call_id": call.id, "name": call.name, "arguments": call.arguments_json})
    if not calls:
        part = {"type": "output_text", "text": plan.text, "annotations": [], "logprobs": []}
        output.append(
            {"id": converter.item_id, "type": "message", "status": "completed", "role": "assistant", "content": [part]}
        )
    usage = {
        "input_tokens": plan.prompt_tokens,
        "output_tokens": timing.emitted,
        "total_tokens": plan.prompt_tokens + timing.emitted,
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens_details": {"reasoning_tokens": 0},
    }
    reply = converter.response("completed", output, usage)
    reply["completed_at"] = int(time.time())
    return reply


async def _serve(state: ServerState, body: dict[str, Any], response: ResponseWriter) -> None:
    model = body.get("model")
    plan = plan_chat(state, model if isinstance(model, str) else "", _chat_body(body))
    converter = _Converter(f"resp_{state.next_id()}", f"msg_{state.next_id()}", body)
    calls = tool_calls(plan, converter.ident)
    timing = Timing()
    async with state.runner(plan, timing) as runner, runner.slot():
        if body.get("stream") is True:
            await _stream(state, converter, calls, plan, timing, response)
            return
        if not await generated_whole(plan, timing, response):
            return
        reply = go_json(_whole_response(converter, calls, plan, timing)) + ENCODER_NEWLINE
        await response.send(200, "application/json", reply)


async def responses(state: ServerState, request: Request, response: ResponseWriter) -> None:
    """``POST /v1/responses``; errors in the OpenAI shape."""
    try:
        body = request_json(request)
    except RequestFailed as exc:
        await send_json(response, openai_error_body(exc.status, exc.message), exc.status)
        return
    try:
        await _serve(state, body, response)
    except RequestFailed as exc:
        if response.started:
            raise
        encoded = go_json(openai_error_body(exc.status, exc.message)) + ENCODER_NEWLINE
        await response.send(exc.status, "application/json", encoded)
