"""Deterministic "model output": tokens are a pure function of (model, prompt key, position).

The vocabulary mixes ASCII with multi-byte UTF-8 (2, 3 and 4 bytes) and characters Go's JSON encoder
escapes (``<``, ``>``, ``&``), so byte-boundary and escaping bugs in a parser show up as wrong text.
Token ``i`` never depends on how many tokens follow it, so a shorter reply is a prefix of a longer one.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

VOCABULARY: tuple[str, ...] = (
    " the",
    " llama",
    " wire",
    " packet",
    " stream",
    " café",
    " naïve",
    " →",
    "🦙",
    "日本",
    "語",
    " über",
    " déjà",
    " vu",
    ",",
    ".",
    " token",
    " chunk",
    " Ollama",
    " año",
    " 😀",
    " Ω",
    " of",
    " and",
    " to",
    " a",
    " is",
    " fast",
    "\n",
    ' "quoted"',
    " <tag>",
    " &",
)

# Token ids reported in ``context`` start here so they look like real vocabulary ids.
TOKEN_ID_BASE = 1000


def _token_index(model: str, salt: str, key: str, position: int) -> int:
    digest = hashlib.sha256(f"{model}\x00{salt}\x00{key}\x00{position}".encode()).digest()
    return int.from_bytes(digest[:4], "big") % len(VOCABULARY)


def token_ids(model: str, key: str, count: int, salt: str = "content") -> list[int]:
    """Vocabulary indices of the first ``count`` tokens for ``(model, key)``."""
    return [_token_index(model, salt, key, i) for i in range(max(0, count))]


def tokens(model: str, key: str, count: int, salt: str = "content") -> list[str]:
    """The first ``count`` tokens the emulator generates for ``(model, key)``; ``salt`` separates thinking."""
    return [VOCABULARY[i] for i in token_ids(model, key, count, salt)]


def message_text(content: Any) -> str:
    """Text of a message's ``content``: a string, or the ``text`` parts of an OpenAI content list."""
    if isinstance(content, str):
        return content
    if isinstance(content, Sequence):
        return "".join(
            str(part.get("text", "")) for part in content if isinstance(part, Mapping) and part.get("type") == "text"
        )
    return ""


def messages_key(messages: Sequence[Any]) -> str:
    """The prompt key of a chat: ``role: content`` lines; native and OpenAI chats with equal text agree."""
    lines = []
    for message in messages:
        if isinstance(message, Mapping):
            lines.append(f"{message.get('role', '')}: {message_text(message.get('content'))}")
    return "\n".join(lines)


def prompt_token_count(key: str) -> int:
    """A plausible prompt token count: whitespace-separated words plus one (BOS), at least 1."""
    return len(key.split()) + 1


def tool_arguments(tool: Mapping[str, Any], model: str, key: str) -> dict[str, Any]:
    """Deterministic arguments for ``tool`` (an OpenAI/Ollama tool definition), one per declared property."""
    properties: Mapping[str, Any] = {}
    function = tool.get("function")
    params = function.get("parameters") if isinstance(function, Mapping) else None
    if isinstance(params, Mapping) and isinstance(params.get("properties"), Mapping):
        properties = params["properties"]
    arguments: dict[str, Any] = {}
    for position, (name, schema) in enumerate(sorted(properties.items())):
        kind = schema.get("type") if isinstance(schema, Mapping) else None
        word = tokens(model, f"{key}\x00{name}", 1, salt="tool")[0].strip() or "🦙"
        if kind in ("integer", "number"):
            arguments[name] = position + 1
        elif kind == "boolean":
            arguments[name] = position % 2 == 0
        else:
            arguments[name] = word
    return arguments


def tool_name(tool: Mapping[str, Any]) -> str:
    """The function name of a tool definition (``""`` when missing)."""
    function = tool.get("function")
    return str(function.get("name", "")) if isinstance(function, Mapping) else ""


def embedding(model: str, text: str, dimensions: int = 16) -> list[float]:
    """A deterministic unit-length embedding vector for ``text``."""
    digest = hashlib.sha256(f"{model}\x00{text}".encode()).digest()
    raw = [(digest[i % len(digest)] - 127.5) / 127.5 + i * 1e-3 for i in range(dimensions)]
    norm = math.sqrt(sum(v * v for v in raw)) or 1.0
    return [round(v / norm, 6) for v in raw]


def arguments_json(arguments: Mapping[str, Any]) -> str:
    """Tool arguments as the JSON string the OpenAI API carries (Go-style compact)."""
    return json.dumps(arguments, ensure_ascii=False, separators=(",", ":"))
