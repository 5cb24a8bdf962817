"""parse_request / text_of: exact RequestContent for native and OpenAI bodies, None for what is not a JSON object."""

from __future__ import annotations

import json
from typing import Any

import pytest

from analyzer.protocol.endpoints import classify
from analyzer.protocol.request_content import RequestContent, parse_request, text_of


def parse(path: str, body: Any) -> RequestContent | None:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return parse_request(classify(path), raw)


def test_native_generate() -> None:
    body = {"model": "llama3.2:1b", "prompt": "why?", "system": "be brief", "stream": False}
    assert parse("/api/generate", body) == RequestContent("llama3.2:1b", False, "why?", "be brief", None)


def test_native_stream_defaults_to_true_and_openai_to_false() -> None:
    assert parse("/api/generate", {"model": "m", "prompt": "p"}) == RequestContent("m", True, "p")
    assert parse("/v1/completions", {"model": "m", "prompt": "p"}) == RequestContent("m", False, "p")
    assert parse("/api/tags", {}) == RequestContent(None, False)
    assert parse("/not/ollama", {"model": "m"}) == RequestContent("m", None)


def test_chat_prompt_is_the_last_user_message_and_system_joins_system_and_developer() -> None:
    messages = [
        {"role": "system", "content": "rule one"},
        {"role": "user", "content": "first"},
        {"role": "assistant", "content": "ok"},
        {"role": "developer", "content": [{"type": "text", "text": "rule "}, {"type": "text", "text": "two"}]},
        {"role": "user", "content": [{"type": "text", "text": "look: "}, {"type": "image_url", "image_url": {}}]},
        {"role": "tool", "content": "42"},
    ]
    got = parse("/v1/chat/completions", {"model": "m", "messages": messages, "stream": True})
    assert got == RequestContent("m", True, "look: ", "rule one\nrule two", messages)


def test_explicit_system_wins_over_system_messages() -> None:
    body = {"model": "m", "messages": [{"role": "system", "content": "a"}], "system": "b"}
    assert parse("/api/chat", body) == RequestContent("m", True, None, "b", body["messages"])


def test_embed_input_and_pull_name() -> None:
    assert parse("/api/embed", {"model": "m", "input": ["one", "two", 3]}) == RequestContent("m", False, "one\ntwo")
    assert parse("/api/embed", {"model": "m", "input": "one"}) == RequestContent("m", False, "one")
    assert parse("/api/pull", {"name": "llama3.2"}) == RequestContent("llama3.2", True)


def test_wrong_types_are_ignored_not_errors() -> None:
    body = {"model": 7, "stream": "yes", "prompt": {"x": 1}, "system": None, "messages": "hi"}
    assert parse("/api/generate", body) == RequestContent(None, True)


@pytest.mark.parametrize("body", [b"", b"  \n", b"{not json", b"[1, 2]", b'"text"', b"\xff\xfe"])
def test_not_a_json_object_is_none(body: bytes) -> None:
    assert parse("/api/generate", body) is None


@pytest.mark.parametrize(
    ("content", "text"),
    [
        (None, None),
        ("plain", "plain"),
        ([{"type": "text", "text": "a"}, {"type": "image_url"}, "junk", {"type": "text", "text": "b"}], "ab"),
        ([], ""),
        ({"odd": "é"}, '{"odd": "é"}'),
        (5, "5"),
    ],
)
def test_text_of(content: Any, text: str | None) -> None:
    assert text_of(content) == text
