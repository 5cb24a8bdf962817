"""What a generation request will produce: the single source of truth for handlers and tests.

``plan_reply`` is pure: the same request body and config always give the same tokens, so a test can call
``expected_text`` and compare it with what a client received over the wire.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from analyzer.emulator import text
from analyzer.emulator.config import EmulatorConfig
from analyzer.emulator.wire import go_duration_s

Endpoint = Literal["generate", "chat", "openai_chat", "openai_completion"]
NATIVE_ENDPOINTS = ("generate", "chat")
THINK_LEVELS = ("low", "medium", "high")
REPLY_PIECE = 4  # characters per token of an `emulator_reply`


class PlanError(ValueError):
    """A request field the emulator cannot use (answered with HTTP 400)."""


@dataclass(frozen=True)
class ToolCall:
    """One tool call the emulated model makes."""

    name: str
    arguments: dict[str, Any]


@dataclass(frozen=True)
class ReplyPlan:
    """Everything about one generation: the tokens, why it stops, its pacing and any injected fault."""

    model: str
    content: tuple[str, ...]
    thinking: tuple[str, ...]
    tool_calls: tuple[ToolCall, ...]
    done_reason: str
    prompt_tokens: int
    prompt_token_ids: tuple[int, ...]
    content_token_ids: tuple[int, ...]
    prefill_ms: float
    token_ms: float
    error_after: int | None
    close_after: int | None
    fail_status: int | None
    stall_after: int | None = None
    stall_ms: float = 0.0
    keep_alive_s: float | None = None
    num_ctx: int = 0
    load_ms: float | None = None
    prompt_tokens_sent: int = 0

    @property
    def truncated(self) -> bool:
        """The prompt was longer than ``num_ctx`` (``prompt_eval_count`` is pinned at it)."""
        return self.prompt_tokens_sent > self.prompt_tokens

    @property
    def text(self) -> str:
        """The whole reply text (content only)."""
        return "".join(self.content)

    @property
    def thinking_text(self) -> str:
        """The whole thinking text (empty unless thinking was requested)."""
        return "".join(self.thinking)

    @property
    def eval_count(self) -> int:
        """Generated tokens, thinking included (Ollama's ``eval_count``)."""
        return len(self.content) + len(self.thinking)


def _number(source: Mapping[str, Any], key: str, kind: type[int] | type[float]) -> Any:
    value = source.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise PlanError(f"option {key} must be a number, got {value!r}")
    return kind(value)


def _overrides(endpoint: Endpoint, body: Mapping[str, Any]) -> tuple[Mapping[str, Any], int | None]:
    """The mapping holding per-request overrides and the requested length limit, if any."""
    if endpoint in NATIVE_ENDPOINTS:
        options = body.get("options") or {}
        if not isinstance(options, Mapping):
            raise PlanError("options must be an object")
        return options, _number(options, "num_predict", int)
    limit = _number(body, "max_completion_tokens", int)
    if limit is None:
        limit = _number(body, "max_tokens", int)
    return body, limit


def keep_alive_s(body: Mapping[str, Any]) -> float | None:
    """The request's ``keep_alive`` in seconds (negative: forever), parsed like Ollama's ``api.Duration``."""
    value = body.get("keep_alive")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise PlanError(f"Unsupported type: '{type(value).__name__}'")
    if isinstance(value, str):
        try:
            return go_duration_s(value)
        except ValueError as exc:
            raise PlanError(str(exc)) from None
    return float(value)


def _wants_thinking(endpoint: Endpoint, body: Mapping[str, Any]) -> bool:
    think = body.get("think")
    if think is True or think in THINK_LEVELS:
        return True
    if endpoint == "openai_chat":
        reasoning = body.get("reasoning")
        effort = reasoning.get("effort") if isinstance(reasoning, Mapping) else body.get("reasoning_effort")
        return effort in THINK_LEVELS
    return False


def prompt_key(endpoint: Endpoint, body: Mapping[str, Any]) -> str:
    """The text the tokens are derived from: the prompt, or the chat's ``role: content`` lines."""
    if endpoint in ("chat", "openai_chat"):
        messages = body.get("messages") or []
        if not isinstance(messages, list):
            raise PlanError("messages must be a list")
        return text.messages_key(messages)
    prompt = body.get("prompt") or ""
    if isinstance(prompt, list):  # OpenAI completions accept a list of prompts; the first one is used
        prompt = prompt[0] if prompt else ""
    if not isinstance(prompt, str):
        raise PlanError("prompt must be a string")
    return prompt


def _is_empty(endpoint: Endpoint, body: Mapping[str, Any]) -> bool:
    if endpoint in ("chat", "openai_chat"):
        return not body.get("messages")
    return not body.get("prompt")


def plan_reply(endpoint: Endpoint, body: Mapping[str, Any], config: EmulatorConfig | None = None) -> ReplyPlan:
    """Plan the reply to a generation request ``body`` sent to ``endpoint`` on a server with ``config``."""
    config = config or EmulatorConfig()
    model = str(body.get("model") or "")
    source, limit = _overrides(endpoint, body)
    natural = _number(source, "emulator_tokens", int)
    natural = config.tokens if natural is None else max(0, natural)
    key = prompt_key(endpoint, body)
    count, reason = natural, "stop"
    if limit is not None and 0 < limit < natural:
        count, reason = limit, "length"
    thinking: tuple[str, ...] = ()
    tool_calls: tuple[ToolCall, ...] = ()
    keep_alive = keep_alive_s(body)
    if _is_empty(endpoint, body) and endpoint in NATIVE_ENDPOINTS:
        count, reason = 0, "unload" if keep_alive == 0 else "load"
    else:
        if _wants_thinking(endpoint, body):
            thinking = tuple(text.tokens(model, key, config.think_tokens, salt="thinking"))
        tools = body.get("tools") if endpoint in ("chat", "openai_chat") else None
        if isinstance(tools, list) and tools and isinstance(tools[0], Mapping):
            tool_calls = (ToolCall(text.tool_name(tools[0]), text.tool_arguments(tools[0], model, key)),)

    def pick(name: str, default: Any, kind: type[int] | type[float]) -> Any:
        value = _number(source, name, kind)
        return default if value is None else value

    num_ctx = pick("num_ctx", config.num_ctx, int)
    sent = text.prompt_token_count(key)
    evaluated = min(sent, num_ctx) if num_ctx > 0 else sent
    if endpoint in NATIVE_ENDPOINTS and num_ctx > 0 and body.get("shift") is False:
        # Ollama's runner with shift=false stops generating when the context is full instead of shifting it
        # (done_reason "length"). truncate=false is refused in native_generate.prepare, with Ollama's framing.
        room = max(0, num_ctx - evaluated)
        if count > room:
            count, reason = room, "length"
    prompt_ids = tuple(text.TOKEN_ID_BASE + i for i in text.token_ids(model, key, evaluated, "prompt"))
    load_ms = _number(source, "emulator_load_ms", float)
    content = tuple(text.tokens(model, key, count))
    reply = source.get("emulator_reply")
    if isinstance(reply, str) and reply:  # the exact reply text asked for (tests of hostile responses)
        content = tuple(reply[i : i + REPLY_PIECE] for i in range(0, len(reply), REPLY_PIECE))
        count, reason = len(content), "stop"
    return ReplyPlan(
        model=model,
        content=content,
        thinking=thinking,
        tool_calls=tool_calls,
        done_reason=reason,
        prompt_tokens=len(prompt_ids),
        prompt_token_ids=prompt_ids,
        content_token_ids=tuple(text.TOKEN_ID_BASE + i for i in text.token_ids(model, key, count)),
        prefill_ms=max(0.0, pick("emulator_prefill_ms", config.prefill_ms, float)),
        token_ms=max(0.0, pick("emulator_token_ms", config.token_ms, float)),
        error_after=pick("emulator_error_after", config.error_after, int),
        close_after=pick("emulator_close_after", config.close_after, int),
        fail_status=pick("emulator_fail_status", config.fail_status, int),
        stall_after=pick("emulator_stall_after", config.stall_after, int),
        stall_ms=max(0.0, pick("emulator_stall_ms", config.stall_ms, float)),
        keep_alive_s=keep_alive,
        num_ctx=num_ctx,
        load_ms=None if load_ms is None else max(0.0, load_ms),
        prompt_tokens_sent=sent,
    )


def expected_text(endpoint: Endpoint, body: Mapping[str, Any], config: EmulatorConfig | None = None) -> str:
    """The exact reply text (content, not thinking) the emulator sends for this request."""
    return plan_reply(endpoint, body, config).text
