"""What a request body says: model, stream, prompt, system prompt, messages, options — for every API.

Native and OpenAI chat bodies carry ``messages``; Anthropic Messages too (``system`` is a field, a string or
text blocks); OpenAI Responses carry ``input`` (a string, or items: messages, function calls and their outputs)
and ``instructions``. ``/v1/audio/transcriptions`` is a multipart form (see :mod:`.multipart`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from analyzer.protocol.endpoints import API_ANTHROPIC, API_OPENAI, Endpoint
from analyzer.protocol.multipart import boundary_of, form_fields
from analyzer.protocol.request_options import RequestOptions, model_management_kind, read_options

# Content part types that carry text: OpenAI chat ("text"), Anthropic ("text"), Responses ("input_text", and
# "output_text" in an assistant item sent back as input).
_TEXT_PARTS = ("text", "input_text", "output_text")


@dataclass(slots=True)
class RequestContent:
    model: str | None = None
    stream: bool | None = None
    prompt: str | None = None
    system: str | None = None
    messages: list[Any] | None = None
    options: RequestOptions = field(default_factory=RequestOptions)
    management_kind: str | None = None  # "load" / "unload": an empty-prompt native generate/chat


def text_of(content: Any) -> str | None:
    """Message content as text: a string as is; OpenAI content parts joined by their ``text``."""
    if content is None:
        return None
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = [p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") in _TEXT_PARTS]
        return "".join(p for p in parts if isinstance(p, str))
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


def _parse_form(body: bytes, boundary: str) -> RequestContent:
    fields = form_fields(body, boundary)
    return RequestContent(model=fields.get("model"), stream=False, prompt=fields.get("prompt"))


def _responses_input(content: RequestContent, data: dict[str, Any]) -> None:
    """Responses ``input``: a string is the prompt; a list of items is the conversation."""
    items = data.get("input")
    if isinstance(items, list):
        content.messages = items
        content.prompt = _last_user_message(items)
    instructions = data.get("instructions")
    if isinstance(instructions, str) and instructions:
        content.system = instructions


def parse_request(endpoint: Endpoint | None, body: bytes, content_type: str | None = None) -> RequestContent | None:
    """Read a request body. Returns None when the body is not a JSON object (or is empty) nor a multipart form."""
    if not body.strip():
        return None
    boundary = boundary_of(content_type)
    if boundary is not None:
        return _parse_form(body, boundary)
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
    elif isinstance(system, list) and endpoint is not None and endpoint.api == API_ANTHROPIC:
        content.system = text_of(system)
    if endpoint is not None and endpoint.kind == "responses":
        _responses_input(content, data)
    content.options = read_options(endpoint, data)
    content.management_kind = model_management_kind(endpoint, data)
    return content
