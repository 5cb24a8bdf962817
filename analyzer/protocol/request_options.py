"""The generation options a request sets (the record's ``opt_*`` columns), read the way Ollama reads each API.

Every value is what the request *sent*, mapped to Ollama's native name the way Ollama's compatibility layers
map it (``openai/openai.go``, ``openai/responses.go``, ``anthropic/anthropic.go``); an option the request did not
set stays None, even where Ollama then applies a default (the OpenAI layer's temperature 1.0, say).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from analyzer.protocol.endpoints import API_ANTHROPIC, API_OPENAI, KIND_LOAD, KIND_UNLOAD, Endpoint

# Go's time.ParseDuration units; a keep_alive string is zero when every number in it is zero.
_GO_DURATION = re.compile(r"[+-]?(?:(?:\d+\.?\d*|\.\d+)(?:ns|us|µs|μs|ms|s|m|h))+")
_DURATION_NUMBER = re.compile(r"\d+\.?\d*|\.\d+")


@dataclass(slots=True)
class RequestOptions:
    """The ``opt_*`` columns (names without the prefix)."""

    num_ctx: int | None = None
    num_predict: int | None = None
    temperature: float | None = None
    seed: int | None = None
    keep_alive: str | None = None
    think: str | None = None
    truncate: bool | None = None
    shift: bool | None = None
    logprobs: bool | None = None
    format: bool | None = None
    tools: int | None = None

    def columns(self) -> dict[str, Any]:
        """``{"opt_num_ctx": …, …}`` for the record."""
        return {f"opt_{f.name}": getattr(self, f.name) for f in fields(self)}


def _int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return None


def _float(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _bool(value: Any) -> bool | None:
    return value if isinstance(value, bool) else None


def _think(value: Any) -> str | None:
    """Ollama's ``think`` (bool or ``low|medium|high|max``) as text: ``true``, ``false``, or the level."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str) and value:
        return value
    return None


def _effort(value: Any) -> str | None:
    """An OpenAI reasoning effort as Ollama turns it into ``think``: ``none`` is false, a level stays a level."""
    if not isinstance(value, str) or not value:
        return None
    return "false" if value == "none" else value


def keep_alive_text(value: Any) -> str | None:
    """``keep_alive`` as sent: a duration string as is, a number of seconds as its JSON text (``0``, ``-1``)."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return json.dumps(value)


def keep_alive_is_zero(value: Any) -> bool:
    """Whether Ollama reads this ``keep_alive`` as zero (unload now): ``0``, ``0.0``, ``"0"``, ``"0s"``, ``"0m0s"``…"""
    if isinstance(value, bool):
        return False
    if isinstance(value, int | float):
        return value == 0
    if not isinstance(value, str):
        return False
    text = value.strip()
    if text in ("0", "+0", "-0"):
        return True
    if not _GO_DURATION.fullmatch(text):
        return False
    return all(float(number) == 0 for number in _DURATION_NUMBER.findall(text))


def _count(value: Any) -> int | None:
    return len(value) if isinstance(value, list) else None


def _native(data: Mapping[str, Any]) -> RequestOptions:
    raw = data.get("options")
    options: Mapping[str, Any] = raw if isinstance(raw, Mapping) else {}
    return RequestOptions(
        num_ctx=_int(options.get("num_ctx")),
        num_predict=_int(options.get("num_predict")),
        temperature=_float(options.get("temperature")),
        seed=_int(options.get("seed")),
        keep_alive=keep_alive_text(data.get("keep_alive")),
        think=_think(data.get("think")),
        truncate=_bool(data.get("truncate")),
        shift=_bool(data.get("shift")),
        logprobs=_bool(data.get("logprobs")),
        format=True if data.get("format") not in (None, "") else None,
        tools=_count(data.get("tools")),
    )


def _openai(data: Mapping[str, Any]) -> RequestOptions:
    reasoning = data.get("reasoning")
    effort = reasoning.get("effort") if isinstance(reasoning, Mapping) else data.get("reasoning_effort")
    response_format = data.get("response_format")
    format_type = response_format.get("type") if isinstance(response_format, Mapping) else None
    logprobs = data.get("logprobs")
    logprob_count = _int(logprobs)  # /v1/completions sends a number of logprobs
    return RequestOptions(
        num_predict=_int(data.get("max_tokens")),  # Ollama maps max_tokens only (not max_completion_tokens)
        temperature=_float(data.get("temperature")),
        seed=_int(data.get("seed")),
        think=_effort(effort),
        logprobs=logprobs if isinstance(logprobs, bool) else (None if logprob_count is None else logprob_count > 0),
        format=True if format_type in ("json_object", "json_schema") else None,
        tools=_count(data.get("tools")),
    )


def _responses(data: Mapping[str, Any]) -> RequestOptions:
    reasoning = data.get("reasoning")
    text = data.get("text")
    text_format = text.get("format") if isinstance(text, Mapping) else None
    format_type = text_format.get("type") if isinstance(text_format, Mapping) else None
    return RequestOptions(
        num_predict=_int(data.get("max_output_tokens")),
        temperature=_float(data.get("temperature")),
        think=_effort(reasoning.get("effort")) if isinstance(reasoning, Mapping) else None,
        format=True if format_type in ("json_object", "json_schema") else None,
        tools=_count(data.get("tools")),
    )


def _anthropic(data: Mapping[str, Any]) -> RequestOptions:
    thinking = data.get("thinking")
    think = None
    if isinstance(thinking, Mapping):
        think = {"enabled": "true", "disabled": "false"}.get(str(thinking.get("type")))
    output_config = data.get("output_config")
    if think is None and isinstance(output_config, Mapping):
        effort = str(output_config.get("effort") or "").strip().lower()
        effort = "high" if effort == "xhigh" else effort
        think = effort if effort in ("low", "medium", "high", "max") else None
    return RequestOptions(
        num_predict=_int(data.get("max_tokens")),
        temperature=_float(data.get("temperature")),
        think=think,
        tools=_count(data.get("tools")),
    )


def read_options(endpoint: Endpoint | None, data: Mapping[str, Any]) -> RequestOptions:
    """The options a JSON request body sets, for the API its endpoint speaks (native when unknown)."""
    if endpoint is not None and endpoint.api == API_ANTHROPIC:
        return _anthropic(data)
    if endpoint is not None and endpoint.kind == "responses":
        return _responses(data)
    if endpoint is not None and endpoint.api == API_OPENAI:
        return _openai(data)
    return _native(data)


def model_management_kind(endpoint: Endpoint | None, data: Mapping[str, Any]) -> str | None:
    """``load`` / ``unload`` for a native generate/chat that only (un)loads the model, else None.

    As in Ollama's handlers: generate with an empty ``prompt``, chat with no ``messages``; with a ``keep_alive``
    of zero the model is unloaded instead (``done_reason`` ``unload``).
    """
    if endpoint is None or endpoint.api == API_OPENAI or endpoint.api == API_ANTHROPIC:
        return None
    if endpoint.kind == "generate":
        empty = data.get("prompt") in (None, "")
    elif endpoint.kind == "chat":
        empty = not data.get("messages")
    else:
        return None
    if not empty:
        return None
    return KIND_UNLOAD if keep_alive_is_zero(data.get("keep_alive")) else KIND_LOAD
