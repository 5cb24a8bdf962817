"""What the Anthropic and Responses middlewares share: turning a request into a chat plan, pacing it, errors.

Ollama's middlewares convert the request into an ``api.ChatRequest`` and run the chat handler; the emulator does
the same by converting into an OpenAI-chat body and planning it (same tokens for the same conversation text).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

from analyzer.emulator import text
from analyzer.emulator.http11 import Request, ResponseWriter
from analyzer.emulator.native_generate import check_model
from analyzer.emulator.pacing import Fault, Timing, Token, paced_tokens
from analyzer.emulator.plan import PlanError, ReplyPlan, plan_reply
from analyzer.emulator.replies import RequestFailed, fail_message
from analyzer.emulator.state import ServerState

# Go's json.Encoder (used by the middlewares for whole bodies and errors) ends its output with a newline.
ENCODER_NEWLINE = b"\n"


def request_json(request: Request) -> dict[str, Any]:
    """The request body as a JSON object; a zstd body is decoded first (Ollama's ResponsesMiddleware does).

    RequestFailed(400) with ``message`` for anything else.
    """
    raw = request.body
    if request.headers.get("content-encoding", "").strip().lower() == "zstd":
        try:
            import zstandard

            raw = zstandard.ZstdDecompressor().stream_reader(raw, read_across_frames=True).read(20 << 20)
        except Exception:  # zstandard.ZstdError, or a missing module
            raise RequestFailed(400, "failed to decompress zstd body") from None
    try:
        value = json.loads(raw) if raw.strip() else None
    except (UnicodeDecodeError, ValueError) as exc:
        raise RequestFailed(400, str(exc)) from None
    if not isinstance(value, Mapping):
        raise RequestFailed(400, "EOF" if value is None else "request body must be a JSON object")
    return dict(value)


def overrides(body: Mapping[str, Any]) -> dict[str, Any]:
    """The emulator's own per-request knobs (``emulator_tokens``, ``emulator_token_ms``, …), passed through."""
    return {k: v for k, v in body.items() if isinstance(k, str) and k.startswith("emulator_")}


def function_tool(name: Any, parameters: Any, description: Any = None) -> dict[str, Any]:
    """An OpenAI/Ollama function tool definition."""
    function: dict[str, Any] = {"name": str(name or "")}
    if isinstance(description, str):
        function["description"] = description
    if isinstance(parameters, Mapping):
        function["parameters"] = dict(parameters)
    return {"type": "function", "function": function}


def plan_chat(state: ServerState, model: str, chat_body: dict[str, Any]) -> ReplyPlan:
    """Check the model and plan ``chat_body`` as a chat; RequestFailed for a bad request or an injected status."""
    check_model(state, {"model": model})
    try:
        plan = plan_reply("openai_chat", {**chat_body, "model": model}, state.config)
    except PlanError as exc:
        raise RequestFailed(400, str(exc)) from None
    if plan.fail_status:
        raise RequestFailed(plan.fail_status, fail_message(plan.fail_status))
    return plan


@dataclass(frozen=True)
class EmittedToolCall:
    """A tool call as Ollama's chat handler hands it to a middleware."""

    id: str
    name: str
    arguments_json: str
    arguments: dict[str, Any]


def tool_calls(plan: ReplyPlan, salt: str) -> list[EmittedToolCall]:
    """The plan's tool calls with stable ids (``call_…``)."""
    calls = []
    for i, call in enumerate(plan.tool_calls):
        ident = "call_" + text.tokens(plan.model, f"{salt}\x00{call.name}", 1, "id")[0].strip().encode().hex()[:8]
        calls.append(EmittedToolCall(f"{ident}{i}", call.name, text.arguments_json(call.arguments), call.arguments))
    return calls


@dataclass
class Step:
    """One chunk of the chat handler's output: a token, the tool calls, the final object, or a fault."""

    token: Token | None = None
    tools: bool = False
    done: bool = False
    fault: Fault | None = None


async def chat_steps(plan: ReplyPlan, timing: Timing) -> AsyncIterator[Step]:
    """The chunks Ollama's chat handler writes: tokens (thinking first), then the tool calls, then done."""
    async for event in paced_tokens(plan, timing):
        if isinstance(event, Fault):
            yield Step(fault=event)
            return
        yield Step(token=event)
    if plan.tool_calls:
        yield Step(tools=True)
    yield Step(done=True)


async def generated_whole(plan: ReplyPlan, timing: Timing, response: ResponseWriter) -> bool:
    """Generate a non-streamed reply's tokens at their pace; False when a fault closed the connection (nothing
    more to send), RequestFailed for an error fault (the handler answers it as its API's error)."""
    async for step in chat_steps(plan, timing):
        if step.fault is not None:
            if step.fault.kind == "close":
                response.abort()
                return False
            raise RequestFailed(500, step.fault.message)
    return True


def stop_reason(plan: ReplyPlan) -> str:
    """Ollama's ``done_reason`` for the plan."""
    return "length" if plan.done_reason == "length" else "stop"
