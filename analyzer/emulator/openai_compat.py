"""The OpenAI-compatible ``/v1`` endpoints: SSE streams (``stream: true``) or single objects."""

from __future__ import annotations

import time
from typing import Any

from analyzer.emulator import text
from analyzer.emulator.http11 import Request, ResponseWriter
from analyzer.emulator.native_generate import check_model, prepare
from analyzer.emulator.pacing import Fault, Timing, Token, paced_tokens
from analyzer.emulator.plan import ReplyPlan
from analyzer.emulator.replies import (
    SSE_TYPE,
    RequestFailed,
    openai_error_body,
    pace_whole_reply,
    parse_body,
    send_openai_json,
)
from analyzer.emulator.state import ServerState
from analyzer.emulator.wire import go_json

CREATED_EPOCH = 1_722_513_600  # 2024-08-01T12:00:00Z, the fake models' creation time


def _finish_reason(plan: ReplyPlan) -> str:
    if plan.tool_calls:
        return "tool_calls"
    return "length" if plan.done_reason == "length" else "stop"


def _usage(plan: ReplyPlan, completion_tokens: int) -> dict[str, int]:
    return {
        "prompt_tokens": plan.prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": plan.prompt_tokens + completion_tokens,
    }


def _tool_calls(plan: ReplyPlan, model: str) -> list[dict[str, Any]]:
    return [
        {
            "id": f"call_{text.tokens(model, call.name, 1, 'id')[0].strip().encode().hex()[:8]}{i}",
            "index": i,
            "type": "function",
            "function": {"name": call.name, "arguments": text.arguments_json(call.arguments)},
        }
        for i, call in enumerate(plan.tool_calls)
    ]


class _SseStream:
    """Builds and sends the chunk objects of one streamed chat or completion."""

    def __init__(self, chat: bool, ident: str, model: str, response: ResponseWriter) -> None:
        self.chat = chat
        self.response = response
        self.base = {
            "id": ident,
            "object": "chat.completion.chunk" if chat else "text_completion",
            "created": int(time.time()),
            "model": model,
            "system_fingerprint": "fp_ollama",
        }
        self.role_sent = False
        self.role_every_chunk = False  # v0.24.0 repeats the role in every delta; older servers only in the first
        self._tail: list[bytes] | None = None

    async def event(self, payload: bytes) -> None:
        data = b"data: " + payload + b"\n\n"
        if self._tail is not None:
            self._tail.append(data)
        else:
            await self.response.write_chunk(data)

    def hold(self) -> None:
        """Collect the following events into one chunk (v0.24.0 writes finish, usage and [DONE] together)."""
        self._tail = []

    async def flush(self) -> None:
        if self._tail:
            await self.response.write_chunk(b"".join(self._tail))
        self._tail = None

    async def choice(self, delta: dict[str, Any], finish: str | None) -> None:
        if self.chat:
            if self.role_every_chunk or not self.role_sent:
                delta = {"role": "assistant", **delta}
                self.role_sent = True
            choice: dict[str, Any] = {"index": 0, "delta": delta, "finish_reason": finish}
        else:
            choice = {"text": delta.get("content", ""), "index": 0, "finish_reason": finish}
        await self.event(go_json({**self.base, "choices": [choice]}))

    async def usage(self, usage: dict[str, int]) -> None:
        await self.event(go_json({**self.base, "choices": [], "usage": usage}))


def _delta(token: Token) -> dict[str, Any]:
    return {"reasoning": token.text} if token.kind == "thinking" else {"content": token.text}


async def _stream(
    chat: bool, state: ServerState, body: dict[str, Any], plan: ReplyPlan, timing: Timing, response: ResponseWriter
) -> None:
    legacy = state.config.openai_legacy_finish
    ident = f"{'chatcmpl' if chat else 'cmpl'}-{state.next_id()}"
    sse = _SseStream(chat, ident, str(body["model"]), response)
    sse.role_every_chunk = not legacy
    response.start_stream(200, SSE_TYPE)
    # Legacy servers put finish_reason on the last content chunk, so hold each chunk back by one.
    held: dict[str, Any] | None = None
    async for event in paced_tokens(plan, timing):
        if isinstance(event, Fault):
            if event.kind == "close":
                response.abort()
                return
            if held is not None:
                await sse.choice(held, None)
            await sse.event(go_json(openai_error_body(500, event.message)))
            await response.end_stream()
            return
        if not chat and event.kind == "thinking":
            continue
        if legacy:
            if held is not None:
                await sse.choice(held, None)
            held = _delta(event)
        else:
            await sse.choice(_delta(event), None)
    finish = _finish_reason(plan)
    if chat and plan.tool_calls:
        if held is not None:
            await sse.choice(held, None)
        held = {"tool_calls": _tool_calls(plan, plan.model)}
        if not legacy:
            await sse.choice(held, None)
            held = None
    if legacy:
        await sse.choice(held if held is not None else {"content": ""}, finish)
    else:
        sse.hold()
        await sse.choice({"content": ""}, finish)
    options = body.get("stream_options")
    if isinstance(options, dict) and options.get("include_usage"):
        await sse.usage(_usage(plan, timing.emitted))
    await sse.event(b"[DONE]")
    await sse.flush()
    await response.end_stream()


async def _whole(
    chat: bool, state: ServerState, body: dict[str, Any], plan: ReplyPlan, timing: Timing, response: ResponseWriter
) -> None:
    if not await pace_whole_reply(plan, timing, response):
        return
    reply: dict[str, Any] = {
        "id": f"{'chatcmpl' if chat else 'cmpl'}-{state.next_id()}",
        "object": "chat.completion" if chat else "text_completion",
        "created": int(time.time()),
        "model": body["model"],
        "system_fingerprint": "fp_ollama",
    }
    if chat:
        message: dict[str, Any] = {"role": "assistant", "content": plan.text}
        if plan.thinking:
            message["reasoning"] = plan.thinking_text
        if plan.tool_calls:
            message["tool_calls"] = _tool_calls(plan, plan.model)
        choice = {"index": 0, "message": message, "finish_reason": _finish_reason(plan)}
    else:
        choice = {"text": plan.text, "index": 0, "finish_reason": _finish_reason(plan)}
    reply["choices"] = [choice]
    reply["usage"] = _usage(plan, timing.emitted)
    await send_openai_json(response, reply)


async def _completion(chat: bool, state: ServerState, request: Request, response: ResponseWriter) -> None:
    timing = Timing()
    body, plan = prepare(state, "openai_chat" if chat else "openai_completion", request)
    async with state.runner(plan, timing) as runner, runner.slot():
        if body.get("stream") is True:
            await _stream(chat, state, body, plan, timing, response)
        else:
            await _whole(chat, state, body, plan, timing, response)


async def chat_completions(state: ServerState, request: Request, response: ResponseWriter) -> None:
    """``POST /v1/chat/completions``."""
    await _completion(True, state, request, response)


async def completions(state: ServerState, request: Request, response: ResponseWriter) -> None:
    """``POST /v1/completions``."""
    await _completion(False, state, request, response)


async def embeddings(state: ServerState, request: Request, response: ResponseWriter) -> None:
    """``POST /v1/embeddings``."""
    body = parse_body(request.body)
    model = check_model(state, body)
    raw = body.get("input", "")
    inputs = [raw] if isinstance(raw, str) else raw
    if not isinstance(inputs, list) or not all(isinstance(i, str) for i in inputs) or not inputs:
        raise RequestFailed(400, "invalid input type")
    count = sum(text.prompt_token_count(i) for i in inputs)
    data = [{"object": "embedding", "embedding": text.embedding(model, s), "index": i} for i, s in enumerate(inputs)]
    await send_openai_json(
        response,
        {"object": "list", "data": data, "model": model, "usage": {"prompt_tokens": count, "total_tokens": count}},
    )


def _model_entry(name: str) -> dict[str, Any]:
    return {"id": name, "object": "model", "created": CREATED_EPOCH, "owned_by": "library"}


async def models(state: ServerState, request: Request, response: ResponseWriter) -> None:
    """``GET /v1/models``."""
    await send_openai_json(response, {"object": "list", "data": [_model_entry(n) for n in state.models]})


async def model(state: ServerState, request: Request, response: ResponseWriter) -> None:
    """``GET /v1/models/{name}``."""
    name = request.path.removeprefix("/v1/models/")
    resolved = state.resolve(name)
    if resolved is None:
        raise RequestFailed(404, f"model '{name}' not found")
    await send_openai_json(response, _model_entry(resolved))
