"""What a request body says: model, stream, prompt, system prompt, messages."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from analyzer.protocol.endpoints import API_OPENAI, Endpoint


@dataclass(slots=True)
class RequestContent:
    model: str | None = None
    stream: bool | None = None
    prompt: str | None = None
    system: str | None = None
    messages: list[Any] | None = None


def text_of(content: Any) -> str | None:
    """Message content as text: a string as is; OpenAI content parts joined by their ``text``."""
    if content is None:
        return None
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = [p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text"]
        return "".join(parts)
    try:
        return json.dumps(content, ensure_ascii=False)
    except RecursionError:  # nested deeper than Python can walk: there is no text to show
        return None


def _last_user_message(messages: list[Any]) -> str | None:
    for message in reversed(messages):
        if isinstance(message, dict) and message.get("role") == "user":
            return text_of(message.get("content"))
    return None


def _system_messages(messages: list[Any]) -> str | None:
    texts = [
        text_of(m.get("content")) or ""
        for m in messages
        if isinstance(m, dict) and m.get("role") in ("system", "developer")
    ]
    return "\n".join(texts) if texts else None


def parse_request(endpoint: Endpoint | None, body: bytes) -> RequestContent | None:
    """Read a request body. Returns None when the body is not a JSON object (or is empty)."""
    if not body.strip():
        return None
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):  # RecursionError: absurdly deep nesting
        return None
    if not isinstance(data, dict):
        return None
    content = RequestContent()
    model = data.get("model", data.get("name"))
    content.model = model if isinstance(model, str) else None
    stream = data.get("stream")
    if isinstance(stream, bool):
        content.stream = stream
    elif endpoint is not None:
        content.stream = endpoint.streams_by_default and endpoint.api != API_OPENAI
    messages = data.get("messages")
    if isinstance(messages, list):
        content.messages = messages
        content.prompt = _last_user_message(messages)
        content.system = _system_messages(messages)
    prompt = data.get("prompt", data.get("input"))
    if isinstance(prompt, str):
        content.prompt = prompt
    elif isinstance(prompt, list) and content.messages is None and prompt and isinstance(prompt[0], str):
        content.prompt = "\n".join(p for p in prompt if isinstance(p, str))
    system = data.get("system")
    if isinstance(system, str):
        content.system = system
    return content
