"""Redaction of prompts, responses and images, applied to a finished record by every producer."""

from __future__ import annotations

import copy
import hashlib
import json
import re
from typing import Any

from analyzer.protocol.record import FLAG_REDACTED, InteractionRecord

REDACT_NONE = "none"  # keep everything, images included
REDACT_IMAGES = "images"  # replace base64 images by a hash placeholder (default: images are huge)
REDACT_HASH = "hash"  # replace every prompt/response text by its sha256
REDACT_DROP = "drop"  # remove prompts and responses entirely
REDACTION_MODES = (REDACT_NONE, REDACT_IMAGES, REDACT_HASH, REDACT_DROP)


def digest(value: Any) -> str:
    """``sha256:<hex>`` of a text (or of the compact JSON of anything else)."""
    raw = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, sort_keys=True)
    return "sha256:" + hashlib.sha256(raw.encode("utf-8")).hexdigest()


def _without_images(messages: list[Any]) -> list[Any]:
    cleaned: list[Any] = []
    for message in messages:
        if isinstance(message, dict) and message.get("images"):
            message = dict(message)
            images = message["images"]
            message["images"] = [_placeholder(i) if isinstance(i, str) else i for i in images]
        if isinstance(message, dict) and isinstance(message.get("content"), list):
            message = dict(message)
            message["content"] = [_without_image_part(p) for p in message["content"]]
        cleaned.append(message)
    return cleaned


def _placeholder(data: str) -> str:
    return f"<image {len(data)} chars {digest(data)}>"


def _without_image_part(part: Any) -> Any:
    """A content part with its inline image data replaced: OpenAI ``image_url``, Responses ``input_image``,
    Anthropic ``image`` (also inside a ``tool_result``'s content)."""
    if not isinstance(part, dict):
        return part
    kind = part.get("type")
    if kind == "image_url":
        url = (part.get("image_url") or {}).get("url", "")
        if isinstance(url, str) and url.startswith("data:"):
            return {"type": "image_url", "image_url": {"url": _placeholder(url)}}
    elif kind == "input_image":
        url = part.get("image_url")
        if isinstance(url, str) and url.startswith("data:"):
            return {**part, "image_url": _placeholder(url)}
    elif kind == "image":
        source = part.get("source")
        if isinstance(source, dict) and isinstance(source.get("data"), str):
            return {**part, "source": {**source, "data": _placeholder(source["data"])}}
    elif kind == "tool_result" and isinstance(part.get("content"), list):
        return {**part, "content": [_without_image_part(p) for p in part["content"]]}
    return part


IMAGE_PLACEHOLDER = re.compile(r"<image \d+ chars sha256:[0-9a-f]{64}>")


def _images_replaced(value: Any) -> tuple[Any, bool]:
    """``value`` (a parsed request body) with every base64 image replaced by its placeholder, and whether any was:
    native ``images`` lists, ``data:`` URLs (OpenAI ``image_url``, Responses ``input_image``) and base64 sources
    (Anthropic ``{"type": "base64", "data": …}``). Iterative walk: a body of any depth is safe."""
    changed = False

    def swap(item: Any, key: str | None, parent: dict[str, Any] | None) -> Any:
        nonlocal changed
        if isinstance(item, str):
            if item.startswith("data:") and ";base64," in item[:100]:
                changed = True
                return _placeholder(item)
            if key == "data" and parent is not None and parent.get("type") == "base64" and item:
                changed = True
                return _placeholder(item)
        return item

    root: list[Any] = [value]  # changed in place: the caller passes a freshly parsed body
    stack: list[Any] = [root[0]]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            for key, child in node.items():
                if key == "images" and isinstance(child, list):
                    node[key] = [_placeholder(i) if isinstance(i, str) and i else i for i in child]
                    changed = changed or any(isinstance(i, str) and i for i in child)
                    continue
                node[key] = swap(child, key, node)
                if isinstance(child, dict | list):
                    stack.append(child)
        elif isinstance(node, list):
            for index, child in enumerate(node):
                node[index] = swap(child, None, None)
                if isinstance(child, dict | list):
                    stack.append(child)
    return root[0], changed


def body_without_images(body: str | None) -> str | None:
    """The request body with its base64 images replaced by placeholders (compact JSON), or as it was when it held
    none (or is not JSON): a body is re-written only when something was taken out of it."""
    if not body or ("images" not in body and "base64" not in body):
        return body
    try:
        parsed = json.loads(body)
    except (ValueError, RecursionError):
        return body
    cleaned, changed = _images_replaced(parsed)
    if not changed:
        return body
    try:
        return json.dumps(cleaned, ensure_ascii=False, separators=(",", ":"))
    except RecursionError:  # nested deeper than Python can write back: keep no body rather than the images
        return None


def has_image_placeholder(body: str) -> bool:
    """Whether a kept request body had images replaced (it cannot be sent again as it was)."""
    return IMAGE_PLACEHOLDER.search(body) is not None


def redact(record: InteractionRecord, mode: str) -> InteractionRecord:
    """A copy of ``record`` redacted per ``mode`` (one of REDACTION_MODES); ``none`` returns it as is."""
    if mode == REDACT_NONE:
        return record
    if mode not in REDACTION_MODES:
        raise ValueError(f"unknown redaction mode {mode!r}; choose one of {', '.join(REDACTION_MODES)}")
    out = copy.copy(record)
    if out.messages:
        out.messages = _without_images(out.messages)
    if mode == REDACT_IMAGES:
        out.request_body = body_without_images(out.request_body)
        return out
    out.request_body = None  # the body holds every prompt: hash and drop keep none of it
    text_fields = ("prompt", "system", "response_text", "thinking_text")
    if mode == REDACT_HASH:
        for name in text_fields:
            value = getattr(out, name)
            if value:
                setattr(out, name, digest(value))
        if out.messages:
            out.messages = [digest(m) for m in out.messages]
        if out.tool_calls:
            out.tool_calls = [digest(c) for c in out.tool_calls]
    else:
        out.prompt = out.system = None
        out.response_text = out.thinking_text = ""
        out.messages = None
        out.tool_calls = []
    out.flags = [*out.flags, FLAG_REDACTED]
    return out
