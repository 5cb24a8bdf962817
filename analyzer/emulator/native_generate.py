"""``/api/generate`` and ``/api/chat``: NDJSON streams (one object per chunk) or one JSON object."""

from __future__ import annotations

from typing import Any

from analyzer.emulator.http11 import Request, ResponseWriter
from analyzer.emulator.pacing import Fault, Timing, Token, paced_tokens
from analyzer.emulator.plan import Endpoint, PlanError, ReplyPlan, plan_reply
from analyzer.emulator.replies import NDJSON_TYPE, RequestFailed, fail_message, pace_whole_reply, parse_body, send_json
from analyzer.emulator.state import ServerState
from analyzer.emulator.wire import go_json, rfc3339_nano


def check_model(state: ServerState, body: dict[str, Any]) -> str:
    """The requested model name; RequestFailed when it is missing or unknown."""
    model = body.get("model")
    if not model or not isinstance(model, str):
        raise RequestFailed(400, "model is required")
    if state.resolve(model) is None:
        raise RequestFailed(404, f"model '{model}' not found")
    return model


def full_name(model: str) -> str:
    """The registry name Ollama puts in capability errors (``registry.ollama.ai/library/NAME:TAG``)."""
    name = model if ":" in model.rsplit("/", 1)[-1] else f"{model}:latest"
    return f"registry.ollama.ai/{name}" if "/" in name else f"registry.ollama.ai/library/{name}"


def _check_capabilities(state: ServerState, endpoint: Endpoint, body: dict[str, Any]) -> None:
    """Ollama's 400s for ``think``/``tools`` on a model whose template supports neither."""
    model = str(body["model"])
    profile = state.config.profile(state.resolve(model) or model)
    think = body.get("think")
    if not profile.thinking and (think is True or isinstance(think, str)):
        raise RequestFailed(400, f'"{model}" does not support thinking')
    if not profile.tools and endpoint in ("chat", "openai_chat") and body.get("tools"):
        raise RequestFailed(400, f"{full_name(model)} does not support tools")


def prepare(state: ServerState, endpoint: Endpoint, request: Request) -> tuple[dict[str, Any], ReplyPlan]:
    """Parse, validate and plan a generation request; injected ``fail_status`` raises here."""
    body = parse_body(request.body)
    if endpoint == "generate" and not body.get("model"):
        raise RequestFailed(404, "model '' not found")  # GenerateHandler looks the empty name up (v0.24.0)
    check_model(state, body)
    _check_capabilities(state, endpoint, body)
    try:
        plan = plan_reply(endpoint, body, state.config)
    except PlanError as exc:
        raise RequestFailed(400, str(exc)) from None
    if (
        endpoint in ("generate", "chat")
        and body.get("truncate") is False
        and plan.prompt_tokens_sent > plan.num_ctx > 0
    ):
        # Ollama's runner refuses (errorInputTooLong); the handler has already begun its streaming reply then.
        streamed = body.get("stream", True) is not False
        raise RequestFailed(400, "the input length exceeds the context length", stream_framed=streamed)
    if plan.fail_status:
        raise RequestFailed(plan.fail_status, fail_message(plan.fail_status))
    return body, plan


def _head(model: str) -> dict[str, Any]:
    return {"model": model, "created_at": rfc3339_nano()}


def _tool_calls(plan: ReplyPlan) -> list[dict[str, Any]]:
    return [
        {"function": {"index": i, "name": call.name, "arguments": call.arguments}}
        for i, call in enumerate(plan.tool_calls)
    ]


def _logprobs(token: Token, top: int) -> list[dict[str, Any]]:
    """``logprobs: true``: one entry per token (a fixed log-probability; ``top_logprobs`` alternatives)."""
    entry: dict[str, Any] = {"token": token.text, "logprob": -0.5, "bytes": list(token.text.encode())}
    if top > 0:
        entry["top_logprobs"] = [
            {"token": token.text, "logprob": -0.5 - i, "bytes": list(token.text.encode())} for i in range(top)
        ]
    return [entry]


def _chunk(endpoint: Endpoint, model: str, token: Token, body: dict[str, Any]) -> dict[str, Any]:
    if endpoint == "generate":
        if token.kind == "thinking":
            chunk = {**_head(model), "response": "", "thinking": token.text, "done": False}
        else:
            chunk = {**_head(model), "response": token.text, "done": False}
    else:
        message = {"role": "assistant", "content": ""}
        message["thinking" if token.kind == "thinking" else "content"] = token.text
        chunk = {**_head(model), "message": message, "done": False}
    if body.get("logprobs") is True:
        top = body.get("top_logprobs")
        chunk["logprobs"] = _logprobs(token, top if isinstance(top, int) else 0)
    return chunk


def _final(endpoint: Endpoint, model: str, plan: ReplyPlan, timing: Timing, whole: bool) -> dict[str, Any]:
    """The ``done: true`` object; ``whole`` puts the full text in it (non-streamed reply)."""
    if endpoint == "generate":
        reply: dict[str, Any] = {**_head(model), "response": plan.text if whole else ""}
        if whole and plan.thinking:
            reply["thinking"] = plan.thinking_text
        reply |= {"done": True, "done_reason": plan.done_reason}
        reply["context"] = list(plan.prompt_token_ids + plan.content_token_ids)
    else:
        message: dict[str, Any] = {"role": "assistant", "content": plan.text if whole else ""}
        if whole and plan.thinking:
            message["thinking"] = plan.thinking_text
        if whole and plan.tool_calls:
            message["tool_calls"] = _tool_calls(plan)
        reply = {**_head(model), "message": message, "done_reason": plan.done_reason, "done": True}
    return reply | timing.metrics(plan)


def _load_reply(endpoint: Endpoint, model: str, reason: str) -> dict[str, Any]:
    """The reply to an empty prompt: ``load`` (model now resident) or ``unload`` (with ``keep_alive: 0``)."""
    if endpoint == "generate":
        return {**_head(model), "response": "", "done": True, "done_reason": reason}
    return {**_head(model), "message": {"role": "assistant", "content": ""}, "done_reason": reason, "done": True}


async def _stream(
    endpoint: Endpoint, body: dict[str, Any], plan: ReplyPlan, timing: Timing, response: ResponseWriter
) -> None:
    model = str(body["model"])
    response.start_stream(200, NDJSON_TYPE)
    async for event in paced_tokens(plan, timing):
        if isinstance(event, Fault):
            if event.kind == "close":
                response.abort()
                return
            await response.write_chunk(go_json({"error": event.message}) + b"\n")
            await response.end_stream()
            return
        await response.write_chunk(go_json(_chunk(endpoint, model, event, body)) + b"\n")
    if endpoint == "chat" and plan.tool_calls:
        message = {"role": "assistant", "content": "", "tool_calls": _tool_calls(plan)}
        await response.write_chunk(go_json({**_head(model), "message": message, "done": False}) + b"\n")
    await response.write_chunk(go_json(_final(endpoint, model, plan, timing, whole=False)) + b"\n")
    await response.end_stream()


async def _whole(endpoint: Endpoint, model: str, plan: ReplyPlan, timing: Timing, response: ResponseWriter) -> None:
    if not await pace_whole_reply(plan, timing, response):
        return
    await send_json(response, _final(endpoint, model, plan, timing, whole=True))


async def handle_generation(endpoint: Endpoint, state: ServerState, request: Request, response: ResponseWriter) -> None:
    """Answer a native generate/chat request (streams unless ``"stream": false``).

    As in Ollama's handlers: an empty prompt with ``keep_alive: 0`` unloads without scheduling; otherwise the
    scheduler hands out a runner (load, eviction), an empty prompt stops there (``load``), and generation
    waits for a parallel slot first.
    """
    timing = Timing()
    body, plan = prepare(state, endpoint, request)
    model = str(body["model"])
    if plan.done_reason == "unload":
        state.scheduler.unload(state.resolve(model) or model)
        await send_json(response, _load_reply(endpoint, model, "unload"))
        return
    async with state.runner(plan, timing) as runner:
        if plan.done_reason == "load":
            await send_json(response, _load_reply(endpoint, model, "load"))
            return
        async with runner.slot():
            if body.get("stream", True) is False:
                await _whole(endpoint, model, plan, timing, response)
            else:
                await _stream(endpoint, body, plan, timing, response)


async def generate(state: ServerState, request: Request, response: ResponseWriter) -> None:
    """``POST /api/generate``."""
    await handle_generation("generate", state, request, response)


async def chat(state: ServerState, request: Request, response: ResponseWriter) -> None:
    """``POST /api/chat``."""
    await handle_generation("chat", state, request, response)
