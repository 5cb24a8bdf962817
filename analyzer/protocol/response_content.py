"""What response objects say: text, thinking, tool calls, done reason, errors, Ollama's counters.

One accumulator reads native Ollama objects (NDJSON lines or a single body), OpenAI-compatible objects (SSE
chunks or a single body), Anthropic Messages events (:mod:`.anthropic_content`) and OpenAI Responses events
(:mod:`.responses_content`). Text is capped; whatever is cut sets ``truncated``.

Each ``apply_*`` returns which kinds of token the object carried, as bits (``TOKEN_CONTENT``,
``TOKEN_THINKING``, ``TOKEN_TOOL``; 0 for none), so the caller can time the first of each kind.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from analyzer.protocol import anthropic_content, responses_content
from analyzer.protocol.endpoints import API_OLLAMA, API_OPENAI
from analyzer.protocol.token_kinds import TOKEN_CONTENT, TOKEN_THINKING, TOKEN_TOOL

NS_PER_MS = 1_000_000


def is_cloud_model_name(name: str | None) -> bool:
    """A model name that asks for Ollama's cloud explicitly: tag ``cloud`` or ending ``-cloud`` (``gpt-oss:20b-cloud``),
    as Ollama's ``modelref.HasExplicitCloudSource`` reads it."""
    if not name or ":" not in name:
        return False
    tag = name.rsplit(":", 1)[1].strip()
    lowered = tag.lower()
    return lowered == "cloud" or ("/" not in tag and lowered.endswith("-cloud"))


def _int_or_none(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def error_message(value: Any) -> str:
    """The text of an ``error`` member: Ollama's string or OpenAI's ``{"message": …}``."""
    if isinstance(value, dict):
        message = value.get("message")
        return message if isinstance(message, str) else json.dumps(value, ensure_ascii=False)
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


@dataclass
class ResponseContent:
    """Accumulates the meaning of a response, object by object."""

    max_text_chars: int
    text: list[str] = field(default_factory=list)
    thinking: list[str] = field(default_factory=list)
    tool_calls: list[Any] = field(default_factory=list)
    stored_chars: int = 0
    truncated: bool = False
    model: str | None = None
    done_reason: str | None = None
    error: str | None = None
    done: bool = False
    counters: dict[str, int] = field(default_factory=dict)
    # Anthropic / Responses: the stream reported a failure (an ``error`` event, ``response.failed``)
    failed: bool = False
    # Remote (cloud) models: what the native response names, if anything
    remote_model: str | None = None
    remote_host: str | None = None
    detected_api: str | None = None
    detected_kind: str | None = None
    progress_status: str | None = None
    # /api/pull, /api/push, /api/create: digest -> [completed, total] bytes, as last reported (live view only)
    layers: dict[str, list[int]] = field(default_factory=dict)
    _openai_tools: dict[int, dict[str, Any]] = field(default_factory=dict)
    # Anthropic content blocks and Responses output items being streamed, by index / item id
    stream_tools: dict[Any, dict[str, Any]] = field(default_factory=dict)
    stream_tool_args: dict[Any, list[str]] = field(default_factory=dict)

    # -- text storage -------------------------------------------------------------------------
    def store_text(self, piece: str) -> int:
        """Keep an answer piece; TOKEN_CONTENT when it is non-empty."""
        if not piece:
            return 0
        self._store(self.text, piece)
        return TOKEN_CONTENT

    def store_thinking(self, piece: str) -> int:
        """Keep a thinking piece; TOKEN_THINKING when it is non-empty."""
        if not piece:
            return 0
        self._store(self.thinking, piece)
        return TOKEN_THINKING

    def _store(self, target: list[str], piece: str) -> None:
        room = self.max_text_chars - self.stored_chars
        if room <= 0:
            self.truncated = True
            return
        if len(piece) > room:
            piece = piece[:room]
            self.truncated = True
        target.append(piece)
        self.stored_chars += len(piece)

    def note_preamble(self, obj: dict[str, Any], api: str) -> None:
        """Note what any object may carry whatever it is: the API it speaks, the model, an error message."""
        self.detected_api = self.detected_api or api
        if isinstance(obj.get("model"), str):
            self.model = obj["model"]
        if obj.get("error") is not None:
            self.error = error_message(obj["error"])
        for name in ("remote_model", "remote_host"):
            value = obj.get(name)
            if isinstance(value, str) and value:
                setattr(self, name, value)

    # -- native Ollama ------------------------------------------------------------------------
    def apply_native(self, obj: dict[str, Any]) -> int:
        """Apply one native object; the kinds of non-empty token it carried (text, thinking, tool call)."""
        self.note_preamble(obj, API_OLLAMA)
        if obj.get("error") is not None:  # an error object carries nothing else
            return 0
        token = 0
        response = obj.get("response")
        if isinstance(response, str):
            self.detected_kind = self.detected_kind or "generate"
            if response:  # inline, not store_text: this is the hot path of every native stream
                self._store(self.text, response)
                token = TOKEN_CONTENT
        message = obj.get("message")
        if isinstance(message, dict):
            self.detected_kind = self.detected_kind or "chat"
            content = message.get("content")
            if isinstance(content, str) and content:
                self._store(self.text, content)
                token |= TOKEN_CONTENT
            thinking = message.get("thinking")
            if isinstance(thinking, str) and thinking:
                self._store(self.thinking, thinking)
                token |= TOKEN_THINKING
            calls = message.get("tool_calls")
            if isinstance(calls, list) and calls:
                self.tool_calls.extend(calls)
                token |= TOKEN_TOOL
        thinking = obj.get("thinking")
        if isinstance(thinking, str) and thinking:
            self._store(self.thinking, thinking)
            token |= TOKEN_THINKING
        status = obj.get("status")
        if isinstance(status, str):
            self.detected_kind = self.detected_kind or "pull"
            self.progress_status = status
            digest, total = obj.get("digest"), _int_or_none(obj.get("total"))
            if isinstance(digest, str) and total is not None:
                self.layers[digest] = [_int_or_none(obj.get("completed")) or 0, total]
            if status == "success":
                self.done = True
        done = obj.get("done") is True
        if done:
            self.done = True
            reason = obj.get("done_reason")
            self.done_reason = reason if isinstance(reason, str) else self.done_reason
        # /api/embed's one object has no `done` but carries total/load duration and prompt_eval_count.
        if done or isinstance(obj.get("embeddings"), list):
            for name in (
                "total_duration",
                "load_duration",
                "prompt_eval_duration",
                "eval_duration",
                "prompt_eval_count",
                "eval_count",
                "prompt_eval_cached_count",
            ):
                value = _int_or_none(obj.get(name))
                if value is not None:
                    self.counters[name] = value
        return token

    # -- OpenAI-compatible --------------------------------------------------------------------
    def apply_openai(self, obj: dict[str, Any]) -> int:
        """Apply one OpenAI chunk or body; the kinds of non-empty token it carried."""
        self.note_preamble(obj, API_OPENAI)
        if obj.get("error") is not None:  # an error object carries nothing else
            return 0
        kind = obj.get("object")
        if isinstance(kind, str):
            if kind.startswith("chat.completion"):
                self.detected_kind = self.detected_kind or "chat"
            elif kind == "text_completion":
                self.detected_kind = self.detected_kind or "generate"
        usage = obj.get("usage")
        if isinstance(usage, dict):
            for ours, theirs in (("prompt_eval_count", "prompt_tokens"), ("eval_count", "completion_tokens")):
                value = _int_or_none(usage.get(theirs))
                if value is not None:
                    self.counters[ours] = value
            # Only servers with cached-token reporting (after v0.33) write prompt_tokens_details: a measurement.
            details = usage.get("prompt_tokens_details")
            cached = _int_or_none(details.get("cached_tokens")) if isinstance(details, dict) else None
            if cached is not None:
                self.counters["prompt_eval_cached_count"] = cached
        token = 0
        choices = obj.get("choices")
        if isinstance(choices, list):
            for choice in choices:
                if isinstance(choice, dict) and choice.get("index", 0) == 0:
                    token |= self._apply_openai_choice(choice)
        if not choices and isinstance(obj.get("text"), str) and "object" not in obj:
            # /v1/audio/transcriptions answers {"text": …} (JSON response_format)
            self.detected_kind = self.detected_kind or "transcription"
            token |= self.store_text(obj["text"])
        return token

    def _apply_openai_choice(self, choice: dict[str, Any]) -> int:
        token = 0
        part = choice.get("delta")
        if not isinstance(part, dict):
            part = choice.get("message")
        if isinstance(part, dict):
            content = part.get("content")
            if isinstance(content, str):
                token |= self.store_text(content)
            for key in ("reasoning", "reasoning_content"):
                thinking = part.get(key)
                if isinstance(thinking, str):
                    token |= self.store_thinking(thinking)
            calls = part.get("tool_calls")
            if isinstance(calls, list) and calls:
                self._merge_openai_tool_calls(calls, is_delta="delta" in choice)
                token |= TOKEN_TOOL
        text = choice.get("text")
        if isinstance(text, str):
            token |= self.store_text(text)
        reason = choice.get("finish_reason")
        if isinstance(reason, str):
            self.done_reason = reason
            self.done = True
        return token

    def _merge_openai_tool_calls(self, calls: list[Any], *, is_delta: bool) -> None:
        """Streamed tool calls arrive as deltas keyed by ``index``: names and arguments concatenate."""
        if not is_delta:
            self.tool_calls.extend(calls)
            return
        for call in calls:
            if not isinstance(call, dict):
                continue
            index = call.get("index", len(self._openai_tools))
            merged = self._openai_tools.get(index)
            if merged is None:
                merged = {k: v for k, v in call.items() if k != "function"}
                merged["function"] = dict(call.get("function") or {})
                self._openai_tools[index] = merged
                self.tool_calls.append(merged)
                continue
            function = call.get("function") or {}
            for key in ("name", "arguments"):
                piece = function.get(key)
                if isinstance(piece, str):
                    merged["function"][key] = merged["function"].get(key, "") + piece
            for key, value in call.items():
                if key not in ("function", "index") and value:
                    merged[key] = value

    # -- Anthropic Messages and OpenAI Responses (their own modules) ----------------------------
    def apply_anthropic(self, obj: dict[str, Any]) -> int:
        """Apply one Anthropic Messages event or body; the kinds of non-empty token it carried."""
        return anthropic_content.apply_anthropic(self, obj)

    def apply_responses(self, obj: dict[str, Any]) -> int:
        """Apply one OpenAI Responses event or body; the kinds of non-empty token it carried."""
        return responses_content.apply_responses(self, obj)

    def set_counter(self, name: str, value: Any) -> None:
        """Keep a counter when ``value`` is an integer (anything else: unknown, not zero)."""
        number = _int_or_none(value)
        if number is not None:
            self.counters[name] = number

    # -- results ------------------------------------------------------------------------------
    def counter_ms(self, name: str) -> float | None:
        value = self.counters.get(name)
        return None if value is None else round(value / NS_PER_MS, 3)

    def tokens_per_s(self, count_name: str, duration_name: str) -> float | None:
        count, duration = self.counters.get(count_name), self.counters.get(duration_name)
        if count is None or not duration:
            return None
        return round(count / duration * 1e9, 3)
