"""What response objects say: text, thinking, tool calls, done reason, errors, Ollama's counters.

One accumulator reads native Ollama objects (NDJSON lines or a single body) and OpenAI-compatible
objects (SSE chunks or a single body). Text is capped; whatever is cut sets ``truncated``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from analyzer.protocol.endpoints import API_OLLAMA, API_OPENAI

NS_PER_MS = 1_000_000


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
    detected_api: str | None = None
    detected_kind: str | None = None
    progress_status: str | None = None
    # /api/pull, /api/push, /api/create: digest -> [completed, total] bytes, as last reported (live view only)
    layers: dict[str, list[int]] = field(default_factory=dict)
    _openai_tools: dict[int, dict[str, Any]] = field(default_factory=dict)

    # -- text storage -------------------------------------------------------------------------
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

    def _note_preamble(self, obj: dict[str, Any], api: str) -> None:
        """Note what any object may carry whatever it is: the API it speaks, the model, an error message."""
        self.detected_api = self.detected_api or api
        if isinstance(obj.get("model"), str):
            self.model = obj["model"]
        if obj.get("error") is not None:
            self.error = error_message(obj["error"])

    # -- native Ollama ------------------------------------------------------------------------
    def apply_native(self, obj: dict[str, Any]) -> bool:
        """Apply one native object; True when it carried a non-empty token (text, thinking, tool call)."""
        self._note_preamble(obj, API_OLLAMA)
        if obj.get("error") is not None:  # an error object carries nothing else
            return False
        token = False
        response = obj.get("response")
        if isinstance(response, str):
            self.detected_kind = self.detected_kind or "generate"
            if response:
                self._store(self.text, response)
                token = True
        message = obj.get("message")
        if isinstance(message, dict):
            self.detected_kind = self.detected_kind or "chat"
            content = message.get("content")
            if isinstance(content, str) and content:
                self._store(self.text, content)
                token = True
            thinking = message.get("thinking")
            if isinstance(thinking, str) and thinking:
                self._store(self.thinking, thinking)
                token = True
            calls = message.get("tool_calls")
            if isinstance(calls, list) and calls:
                self.tool_calls.extend(calls)
                token = True
        thinking = obj.get("thinking")
        if isinstance(thinking, str) and thinking:
            self._store(self.thinking, thinking)
            token = True
        status = obj.get("status")
        if isinstance(status, str):
            self.detected_kind = self.detected_kind or "pull"
            self.progress_status = status
            digest, total = obj.get("digest"), _int_or_none(obj.get("total"))
            if isinstance(digest, str) and total is not None:
                self.layers[digest] = [_int_or_none(obj.get("completed")) or 0, total]
            if status == "success":
                self.done = True
        if obj.get("done") is True:
            self.done = True
            reason = obj.get("done_reason")
            self.done_reason = reason if isinstance(reason, str) else self.done_reason
            self._take_counters(obj)
        elif "done" not in obj and isinstance(obj.get("embeddings"), list):
            # /api/embed's body has no ``done``: it carries total_duration, load_duration and prompt_eval_count
            # (Ollama's EmbedResponse), which show embedding-model loads like any other.
            self._take_counters(obj)
        return token

    def _take_counters(self, obj: dict[str, Any]) -> None:
        for name in (
            "total_duration",
            "load_duration",
            "prompt_eval_duration",
            "eval_duration",
            "prompt_eval_count",
            "eval_count",
        ):
            value = _int_or_none(obj.get(name))
            if value is not None:
                self.counters[name] = value

    # -- OpenAI-compatible --------------------------------------------------------------------
    def apply_openai(self, obj: dict[str, Any]) -> bool:
        """Apply one OpenAI chunk or body; True when it carried a non-empty token."""
        self._note_preamble(obj, API_OPENAI)
        if obj.get("error") is not None:  # an error object carries nothing else
            return False
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
        token = False
        choices = obj.get("choices")
        if isinstance(choices, list):
            for choice in choices:
                if isinstance(choice, dict) and choice.get("index", 0) == 0:
                    token = self._apply_openai_choice(choice) or token
        return token

    def _apply_openai_choice(self, choice: dict[str, Any]) -> bool:
        token = False
        part = choice.get("delta")
        if not isinstance(part, dict):
            part = choice.get("message")
        if isinstance(part, dict):
            content = part.get("content")
            if isinstance(content, str) and content:
                self._store(self.text, content)
                token = True
            for key in ("reasoning", "reasoning_content"):
                thinking = part.get(key)
                if isinstance(thinking, str) and thinking:
                    self._store(self.thinking, thinking)
                    token = True
            calls = part.get("tool_calls")
            if isinstance(calls, list) and calls:
                self._merge_openai_tool_calls(calls, is_delta="delta" in choice)
                token = True
        text = choice.get("text")
        if isinstance(text, str) and text:
            self._store(self.text, text)
            token = True
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

    # -- results ------------------------------------------------------------------------------
    def counter_ms(self, name: str) -> float | None:
        value = self.counters.get(name)
        return None if value is None else round(value / NS_PER_MS, 3)

    def tokens_per_s(self, count_name: str, duration_name: str) -> float | None:
        count, duration = self.counters.get(count_name), self.counters.get(duration_name)
        if count is None or not duration:
            return None
        return round(count / duration * 1e9, 3)
