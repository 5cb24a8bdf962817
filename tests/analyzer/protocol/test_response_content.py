"""ResponseContent: exact text, thinking, tool calls, counters and errors from native and OpenAI objects."""

from __future__ import annotations

from typing import Any

import pytest

from analyzer.protocol.response_content import ResponseContent, error_message

FINAL = {
    "model": "llama3.2:1b",
    "done": True,
    "done_reason": "stop",
    "total_duration": 2_500_000_000,
    "load_duration": 1_000_000,
    "prompt_eval_duration": 250_000_000,
    "eval_duration": 2_000_000_000,
    "prompt_eval_count": 10,
    "eval_count": 40,
}


def apply(kind: str, objects: list[dict[str, Any]], cap: int = 1000) -> tuple[ResponseContent, list[bool]]:
    content = ResponseContent(cap)
    apply_one = content.apply_native if kind == "native" else content.apply_openai
    return content, [bool(apply_one(obj)) for obj in objects]


def test_native_generate_stream() -> None:
    objects = [
        {"model": "llama3.2:1b", "response": "Hel", "done": False},
        {"model": "llama3.2:1b", "response": "", "thinking": "hmm", "done": False},
        {"model": "llama3.2:1b", "response": "lo", "done": False},
        {**FINAL, "response": ""},
    ]
    content, tokens = apply("native", objects)
    assert tokens == [True, True, True, False]
    assert (content.text, content.thinking, content.model) == (["Hel", "lo"], ["hmm"], "llama3.2:1b")
    assert (content.done, content.done_reason, content.error) == (True, "stop", None)
    assert (content.detected_api, content.detected_kind) == ("ollama", "generate")
    assert content.counters == {k: v for k, v in FINAL.items() if k.endswith(("_duration", "_count"))}
    assert content.counter_ms("total_duration") == 2500.0 and content.counter_ms("load_duration") == 1.0
    assert content.tokens_per_s("eval_count", "eval_duration") == 20.0
    assert content.tokens_per_s("prompt_eval_count", "prompt_eval_duration") == 40.0


def test_native_chat_with_thinking_and_tool_calls() -> None:
    call = {"function": {"name": "get_weather", "arguments": {"city": "Paris"}}}
    objects = [
        {"model": "m", "message": {"role": "assistant", "content": "", "thinking": "let me"}, "done": False},
        {"model": "m", "message": {"role": "assistant", "content": "", "tool_calls": [call]}, "done": False},
        {"model": "m", "message": {"role": "assistant", "content": "Sunny."}, "done": False},
        {"model": "m", "message": {"role": "assistant", "content": ""}, "done": True, "done_reason": "stop"},
    ]
    content, tokens = apply("native", objects)
    assert tokens == [True, True, True, False]
    assert (content.text, content.thinking, content.tool_calls) == (["Sunny."], ["let me"], [call])
    assert (content.detected_kind, content.done_reason, content.counters) == ("chat", "stop", {})


def test_native_error_mid_stream() -> None:
    content, tokens = apply("native", [{"response": "a", "done": False}, {"error": "model crashed"}])
    assert tokens == [True, False]
    assert (content.text, content.error, content.done) == (["a"], "model crashed", False)


def test_native_pull_progress() -> None:
    objects = [{"status": "pulling manifest"}, {"status": "pulling sha256:ab", "total": 9, "completed": 3}]
    content, tokens = apply("native", [*objects, {"status": "success"}])
    assert tokens == [False, False, False]
    assert (content.detected_kind, content.progress_status, content.done) == ("pull", "success", True)


def test_counters_ignore_non_integers_and_booleans() -> None:
    content, _ = apply("native", [{"done": True, "eval_count": True, "eval_duration": 1.5, "prompt_eval_count": 3}])
    assert content.counters == {"prompt_eval_count": 3}
    assert content.tokens_per_s("eval_count", "eval_duration") is None
    assert content.counter_ms("total_duration") is None


def test_openai_stream_with_reasoning_tool_call_deltas_and_usage() -> None:
    chunk = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "model": "m"}
    objects = [
        {**chunk, "choices": [{"index": 0, "delta": {"role": "assistant", "reasoning": "think"}}]},
        {**chunk, "choices": [{"index": 0, "delta": {"content": "Hi"}, "finish_reason": None}]},
        {**chunk, "choices": [{"index": 1, "delta": {"content": "other choice"}}]},
        {
            **chunk,
            "choices": [
                {
                    "index": 0,
                    "delta": {
                        "tool_calls": [
                            {
                                "index": 0,
                                "id": "call_1",
                                "type": "function",
                                "function": {"name": "get_", "arguments": ""},
                            }
                        ]
                    },
                }
            ],
        },
        {
            **chunk,
            "choices": [
                {
                    "index": 0,
                    "delta": {"tool_calls": [{"index": 0, "function": {"name": "weather", "arguments": '{"c'}}]},
                }
            ],
        },
        {
            **chunk,
            "choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "function": {"arguments": '":1}'}}]}}],
        },
        {**chunk, "choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]},
        {**chunk, "choices": [], "usage": {"prompt_tokens": 7, "completion_tokens": 5, "total_tokens": 12}},
    ]
    content, tokens = apply("openai", objects)
    assert tokens == [True, True, False, True, True, True, False, False]
    assert (content.text, content.thinking) == (["Hi"], ["think"])
    assert content.tool_calls == [
        {"index": 0, "id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"c":1}'}}
    ]
    assert (content.done, content.done_reason) == (True, "tool_calls")
    assert content.counters == {"prompt_eval_count": 7, "eval_count": 5}
    assert (content.detected_api, content.detected_kind, content.model) == ("openai", "chat", "m")


def test_openai_completion_body() -> None:
    body = {
        "object": "text_completion",
        "model": "m",
        "choices": [{"index": 0, "text": "Once", "finish_reason": "length"}],
        "usage": {"prompt_tokens": 2, "completion_tokens": 1},
    }
    content, tokens = apply("openai", [body])
    assert tokens == [True]
    assert (content.text, content.detected_kind, content.done_reason) == (["Once"], "generate", "length")


def test_openai_error_object() -> None:
    error = {"error": {"message": "model 'x' not found", "type": "not_found_error", "param": None}}
    content, tokens = apply("openai", [error])
    assert tokens == [False]
    assert (content.error, content.detected_api, content.text) == ("model 'x' not found", "openai", [])


def test_text_cap_keeps_the_start_and_sets_truncated() -> None:
    content, _ = apply("native", [{"response": "abcd"}, {"response": "efgh"}, {"thinking": "ij"}], cap=6)
    assert (content.text, content.thinking, content.stored_chars, content.truncated) == (["abcd", "ef"], [], 6, True)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("plain", "plain"),
        ({"message": "from openai", "type": "api_error"}, "from openai"),
        ({"code": 5}, '{"code": 5}'),
        (["é"], '["é"]'),
    ],
)
def test_error_message(value: Any, message: str) -> None:
    assert error_message(value) == message
