"""redact(): exact values for every mode, the ``redacted`` flag, native ``images`` and OpenAI ``image_url`` parts."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pytest

from analyzer.protocol.record import FLAG_REDACTED, InteractionRecord
from analyzer.protocol.redact import REDACTION_MODES, digest, redact

IMAGE = "aGVsbG8="  # base64 "hello"
DATA_URL = "data:image/png;base64,aGVsbG8="
WEB_URL = "https://example.com/cat.png"
CALL = {"function": {"name": "get_weather", "arguments": {"city": "Paris"}}}


def sha(text: str) -> str:
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def native_messages() -> list[dict[str, Any]]:
    return [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "what is this?", "images": [IMAGE]},
    ]


def openai_messages() -> list[dict[str, Any]]:
    return [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "and these?"},
                {"type": "image_url", "image_url": {"url": DATA_URL}},
                {"type": "image_url", "image_url": {"url": WEB_URL}},
            ],
        }
    ]


def record(messages: list[dict[str, Any]]) -> InteractionRecord:
    return InteractionRecord(
        id="r1",
        source="proxy",
        prompt="what is this?",
        system="be brief",
        messages=messages,
        response_text="a cat",
        thinking_text="looks furry",
        tool_calls=[CALL],
        flags=["gap_in_capture"],
    )


def test_digest_of_text_and_of_json() -> None:
    assert digest("abc") == "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    assert digest({"b": 1, "a": "é"}) == sha(json.dumps({"a": "é", "b": 1}, ensure_ascii=False))


def test_none_returns_the_record_itself() -> None:
    original = record(native_messages())
    assert redact(original, "none") is original
    assert FLAG_REDACTED not in original.flags


def test_images_mode_replaces_native_images_and_keeps_text_without_the_flag() -> None:
    original = record(native_messages())
    out = redact(original, "images")
    assert out.messages == [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "what is this?", "images": [f"<image 8 chars {sha(IMAGE)}>"]},
    ]
    assert (out.prompt, out.system, out.response_text, out.thinking_text) == (
        "what is this?",
        "be brief",
        "a cat",
        "looks furry",
    )
    assert out.flags == ["gap_in_capture"]  # only text redaction sets ``redacted``
    assert original.messages == native_messages()  # the input is not modified


def test_images_mode_replaces_openai_data_urls_and_keeps_web_urls() -> None:
    out = redact(record(openai_messages()), "images")
    assert out.messages == [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "and these?"},
                {"type": "image_url", "image_url": {"url": f"<image {len(DATA_URL)} chars {sha(DATA_URL)}>"}},
                {"type": "image_url", "image_url": {"url": WEB_URL}},
            ],
        }
    ]


def test_hash_mode_hashes_every_text_and_sets_the_flag() -> None:
    out = redact(record(native_messages()), "hash")
    assert (out.prompt, out.system, out.response_text, out.thinking_text) == (
        sha("what is this?"),
        sha("be brief"),
        sha("a cat"),
        sha("looks furry"),
    )
    without_images = [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "what is this?", "images": [f"<image 8 chars {sha(IMAGE)}>"]},
    ]
    assert out.messages == [digest(m) for m in without_images]
    assert out.tool_calls == [digest(CALL)]
    assert out.flags == ["gap_in_capture", FLAG_REDACTED]


def test_hash_mode_hashes_openai_messages_after_removing_images() -> None:
    out = redact(record(openai_messages()), "hash")
    (message,) = redact(record(openai_messages()), "images").messages or []
    assert out.messages == [digest(message)]
    assert out.flags[-1] == FLAG_REDACTED


def test_drop_mode_removes_every_text_and_sets_the_flag() -> None:
    out = redact(record(openai_messages()), "drop")
    assert (out.prompt, out.system, out.response_text, out.thinking_text, out.messages, out.tool_calls) == (
        None,
        None,
        "",
        "",
        None,
        [],
    )
    assert out.flags == ["gap_in_capture", FLAG_REDACTED]
    assert (out.id, out.source) == ("r1", "proxy")  # everything else stays


def test_empty_texts_stay_empty_when_hashed() -> None:
    out = redact(InteractionRecord(prompt=None, response_text=""), "hash")
    assert (out.prompt, out.response_text, out.flags) == (None, "", [FLAG_REDACTED])


def test_unknown_mode_is_an_error_naming_the_modes() -> None:
    with pytest.raises(ValueError, match="unknown redaction mode 'all'; choose one of none, images, hash, drop"):
        redact(record([]), "all")
    assert REDACTION_MODES == ("none", "images", "hash", "drop")
