"""Today's Ollama APIs through the builder: Anthropic Messages, OpenAI Responses, the new endpoints, request
options, load/unload, compressed bodies, HEAD, remote models — exact records from the bytes Ollama writes
(event order and shapes read from ``anthropic/anthropic.go``, ``openai/responses.go``, ``middleware/``, v0.24.0).
"""

from __future__ import annotations

import gzip
import json
from typing import Any

import pytest
import zstandard

from analyzer.protocol.interaction import InteractionBuilder
from analyzer.protocol.record import FLAG_ENCODED_BODY, FLAG_ERROR_MID_STREAM, FLAG_REMOTE_MODEL, InteractionRecord
from analyzer.protocol.redact import REDACT_IMAGES

SSE = {"Content-Type": "text/event-stream"}
JSON = {"Content-Type": "application/json; charset=utf-8"}
T0 = 1_000.0


def sse(events: list[tuple[str, dict[str, Any]]]) -> list[bytes]:
    """Each event as Ollama's writeSSE writes it: ``event: T\\ndata: JSON\\n\\n``."""
    return [f"event: {name}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode() for name, data in events]


def run(
    path: str,
    body: dict[str, Any] | bytes,
    pieces: list[bytes],
    headers: dict[str, str],
    *,
    request_headers: dict[str, str] | None = None,
    status: int = 200,
    method: str = "POST",
    step: float = 0.010,
    split: int = 0,
) -> InteractionRecord:
    """Feed one exchange; response piece i arrives at T0 + 0.1 + i * step (cut into ``split``-byte fragments)."""
    builder = InteractionBuilder(source="proxy", redaction=REDACT_IMAGES)
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    builder.request_started(T0, method, path, request_headers or {"Content-Type": "application/json"})
    builder.request_body(raw, T0)
    builder.response_started(T0 + 0.05, status, headers)
    at = T0 + 0.1
    for i, piece in enumerate(pieces):
        at = T0 + 0.1 + i * step
        if split:
            for start in range(0, len(piece), split):
                builder.response_body(piece[start : start + split], at)
        else:
            builder.response_body(piece, at)
    return builder.finish(at)


# ------------------------------------------------------------------------------------------ Anthropic


def anthropic_stream(*, estimate: int = 99) -> list[tuple[str, dict[str, Any]]]:
    """What Ollama's StreamConverter writes for: 2 thinking chunks, 2 text chunks, a tool call, done."""
    msg = {"id": "msg_0a1b", "type": "message", "role": "assistant", "model": "qwen3:8b", "content": []}
    return [
        ("message_start", {"type": "message_start", "message": {**msg, "usage": {"input_tokens": estimate}}}),
        ("content_block_start", {"type": "content_block_start", "index": 0, "content_block": {"type": "thinking"}}),
        ("content_block_delta", _delta(0, {"type": "thinking_delta", "thinking": "Let me "})),
        ("ping", {"type": "ping"}),
        ("content_block_delta", _delta(0, {"type": "thinking_delta", "thinking": "think."})),
        ("content_block_stop", {"type": "content_block_stop", "index": 0}),
        ("content_block_start", _start(1, {"type": "text", "text": ""})),
        ("content_block_delta", _delta(1, {"type": "text_delta", "text": "Checking "})),
        ("content_block_delta", _delta(1, {"type": "text_delta", "text": "Paris."})),
        ("content_block_stop", {"type": "content_block_stop", "index": 1}),
        ("content_block_start", _start(2, {"type": "tool_use", "id": "call_x", "name": "get_weather", "input": {}})),
        ("content_block_delta", _delta(2, {"type": "input_json_delta", "partial_json": '{"city":"Paris"}'})),
        ("content_block_stop", {"type": "content_block_stop", "index": 2}),
        (
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": "tool_use"},
                "usage": {"input_tokens": 21, "output_tokens": 7},
            },
        ),
        ("message_stop", {"type": "message_stop"}),
    ]


def _start(index: int, block: dict[str, Any]) -> dict[str, Any]:
    return {"type": "content_block_start", "index": index, "content_block": block}


def _delta(index: int, delta: dict[str, Any]) -> dict[str, Any]:
    return {"type": "content_block_delta", "index": index, "delta": delta}


ANTHROPIC_REQUEST = {
    "model": "qwen3:8b",
    "max_tokens": 512,
    "stream": True,
    "system": [{"type": "text", "text": "Be brief."}],
    "thinking": {"type": "enabled", "budget_tokens": 256},
    "temperature": 0.2,
    "tools": [{"name": "get_weather", "input_schema": {"type": "object"}}],
    "messages": [{"role": "user", "content": [{"type": "text", "text": "Weather in Paris?"}]}],
}


@pytest.mark.parametrize("split", [0, 1, 7])
def test_anthropic_stream_with_thinking_text_and_tool(split: int) -> None:
    record = run("/v1/messages", ANTHROPIC_REQUEST, sse(anthropic_stream()), SSE, split=split)
    assert (record.api, record.kind, record.model, record.stream) == ("anthropic", "messages", "qwen3:8b", True)
    assert (record.prompt, record.system) == ("Weather in Paris?", "Be brief.")
    assert (record.thinking_text, record.response_text) == ("Let me think.", "Checking Paris.")
    assert record.tool_calls == [
        {"type": "tool_use", "id": "call_x", "name": "get_weather", "input": {"city": "Paris"}}
    ]
    assert (record.done_reason, record.complete, record.error, record.flags) == ("tool_use", True, None, [])
    # the real counts from message_delta, never message_start's estimate (99)
    assert (record.prompt_eval_count, record.eval_count) == (21, 7)
    # events i=2 (first thinking), 7 (first text), 11 (tool arguments) at 100 + 10*i ms
    assert (record.ttft_ms, record.ttft_thinking_ms, record.ttft_content_ms) == (120.0, 120.0, 170.0)
    assert (record.thinking_ms, record.ttft_tool_ms) == (50.0, 210.0)
    assert (record.opt_num_predict, record.opt_temperature, record.opt_think, record.opt_tools) == (512, 0.2, "true", 1)
    assert record.chunks == 15  # every event's data, ping included


def test_anthropic_stream_cut_before_message_delta_has_no_counts() -> None:
    record = run("/v1/messages", ANTHROPIC_REQUEST, sse(anthropic_stream()[:9]), SSE)
    assert (record.prompt_eval_count, record.eval_count, record.complete) == (None, None, False)
    assert record.response_text == "Checking Paris."


def test_anthropic_error_event_mid_stream() -> None:
    events = [
        *anthropic_stream()[:3],
        ("error", {"type": "error", "error": {"type": "overloaded_error", "message": "server busy"}}),
    ]
    record = run("/v1/messages", ANTHROPIC_REQUEST, sse(events), SSE)
    assert (record.error, record.complete, record.flags) == ("server busy", False, [FLAG_ERROR_MID_STREAM])


def test_anthropic_error_body_before_the_stream() -> None:
    # middleware/anthropic.go writeError: anthropic.NewError(status, Ollama's message)
    body = {
        "type": "error",
        "error": {"type": "not_found_error", "message": "model 'nope' not found"},
        "request_id": "req_1",
    }
    record = run("/v1/messages", {**ANTHROPIC_REQUEST, "model": "nope"}, [json.dumps(body).encode()], JSON, status=404)
    assert (record.status, record.error, record.kind, record.complete) == (
        404,
        "model 'nope' not found",
        "messages",
        True,
    )


def test_anthropic_non_streamed_message() -> None:
    reply = {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": "qwen3:8b",
        "content": [
            {"type": "thinking", "thinking": "Hmm."},
            {"type": "text", "text": "Sunny."},
            {"type": "tool_use", "id": "call_y", "name": "get_weather", "input": {"city": "Oslo"}},
        ],
        "stop_reason": "tool_use",
        "usage": {"input_tokens": 30, "output_tokens": 9},
    }
    record = run("/v1/messages", {**ANTHROPIC_REQUEST, "stream": False}, [json.dumps(reply).encode()], JSON)
    assert (record.stream, record.thinking_text, record.response_text) == (False, "Hmm.", "Sunny.")
    assert record.tool_calls == [{"type": "tool_use", "id": "call_y", "name": "get_weather", "input": {"city": "Oslo"}}]
    assert (record.prompt_eval_count, record.eval_count, record.done_reason, record.complete) == (
        30,
        9,
        "tool_use",
        True,
    )
    # one body: every first token is its arrival, and thinking has no measurable duration
    assert record.ttft_thinking_ms == record.ttft_content_ms == record.ttft_tool_ms == record.ttft_ms == 100.0
    assert record.thinking_ms is None


def test_anthropic_cache_read_tokens_are_a_measurement_when_sent() -> None:
    events = anthropic_stream()
    name, data = events[-2]
    events[-2] = (name, {**data, "usage": {**data["usage"], "cache_read_input_tokens": 16}})
    assert run("/v1/messages", ANTHROPIC_REQUEST, sse(events), SSE).prompt_eval_cached_count == 16
    assert run("/v1/messages", ANTHROPIC_REQUEST, sse(anthropic_stream()), SSE).prompt_eval_cached_count is None


# ------------------------------------------------------------------------------------------ Responses


def _response(status: str, usage: dict[str, Any] | None, output: list[Any]) -> dict[str, Any]:
    return {
        "id": "resp_1",
        "object": "response",
        "status": status,
        "model": "qwen3:8b",
        "output": output,
        "usage": usage,
    }


def responses_stream(*, tool: bool = False) -> list[tuple[str, dict[str, Any]]]:
    """What Ollama's ResponsesStreamConverter writes: reasoning, then text (or a function call), completed."""
    seq = iter(range(100))

    def ev(kind: str, **data: Any) -> tuple[str, dict[str, Any]]:
        return kind, {"type": kind, "sequence_number": next(seq), **data}

    events = [
        ev("response.created", response=_response("in_progress", None, [])),
        ev("response.in_progress", response=_response("in_progress", None, [])),
        ev("response.output_item.added", output_index=0, item={"id": "rs_1", "type": "reasoning", "summary": []}),
        ev("response.reasoning_summary_text.delta", item_id="rs_1", output_index=0, summary_index=0, delta="Think"),
        ev("response.reasoning_summary_text.delta", item_id="rs_1", output_index=0, summary_index=0, delta="ing."),
        ev("response.reasoning_summary_text.done", item_id="rs_1", output_index=0, summary_index=0, text="Thinking."),
        ev("response.output_item.done", output_index=0, item={"id": "rs_1", "type": "reasoning"}),
    ]
    if tool:
        item = {"id": "fc_1_0", "type": "function_call", "status": "in_progress", "call_id": "call_z"}
        item |= {"name": "get_weather", "arguments": ""}
        args = '{"city":"Rome"}'
        events += [
            ev("response.output_item.added", output_index=1, item=item),
            ev("response.function_call_arguments.delta", item_id="fc_1_0", output_index=1, delta=args),
            ev("response.function_call_arguments.done", item_id="fc_1_0", output_index=1, arguments=args),
            ev("response.output_item.done", output_index=1, item={**item, "status": "completed", "arguments": args}),
        ]
    else:
        message = {"id": "msg_1", "type": "message", "status": "in_progress", "role": "assistant", "content": []}
        part = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
        events += [
            ev("response.output_item.added", output_index=1, item=message),
            ev("response.content_part.added", item_id="msg_1", output_index=1, content_index=0, part=part),
            ev(
                "response.output_text.delta", item_id="msg_1", output_index=1, content_index=0, delta="Hi ", logprobs=[]
            ),
            ev(
                "response.output_text.delta",
                item_id="msg_1",
                output_index=1,
                content_index=0,
                delta="there",
                logprobs=[],
            ),
            ev("response.output_text.done", item_id="msg_1", output_index=1, content_index=0, text="Hi there"),
        ]
    usage = {
        "input_tokens": 12,
        "output_tokens": 5,
        "total_tokens": 17,
        "input_tokens_details": {"cached_tokens": 0},  # Ollama's constants, not measurements
        "output_tokens_details": {"reasoning_tokens": 0},
    }
    events.append(ev("response.completed", response=_response("completed", usage, [])))
    return events


RESPONSES_REQUEST = {
    "model": "qwen3:8b",
    "stream": True,
    "instructions": "Be brief.",
    "input": [{"role": "user", "content": [{"type": "input_text", "text": "Say hi"}]}],
    "reasoning": {"effort": "low"},
    "max_output_tokens": 300,
}


def test_responses_stream_with_reasoning_and_text() -> None:
    record = run("/v1/responses", RESPONSES_REQUEST, sse(responses_stream()), SSE)
    assert (record.api, record.kind, record.prompt, record.system) == ("openai", "responses", "Say hi", "Be brief.")
    assert (record.thinking_text, record.response_text, record.tool_calls) == ("Thinking.", "Hi there", [])
    assert (record.done_reason, record.complete, record.flags) == ("completed", True, [])
    assert (record.prompt_eval_count, record.eval_count) == (12, 5)
    assert record.prompt_eval_cached_count is None  # cached_tokens: 0 is a constant Ollama writes
    assert (record.ttft_thinking_ms, record.ttft_content_ms, record.thinking_ms, record.ttft_tool_ms) == (
        130.0,
        190.0,
        60.0,
        None,
    )
    assert (record.opt_think, record.opt_num_predict) == ("low", 300)


def test_responses_stream_with_a_function_call() -> None:
    record = run(
        "/v1/responses",
        {**RESPONSES_REQUEST, "tools": [{"type": "function", "name": "w"}]},
        sse(responses_stream(tool=True)),
        SSE,
    )
    call = {"type": "function_call", "call_id": "call_z", "name": "get_weather", "arguments": '{"city":"Rome"}'}
    assert (record.tool_calls, record.response_text, record.opt_tools) == ([call], "", 1)
    assert (record.ttft_tool_ms, record.thinking_ms) == (180.0, 50.0)


def test_responses_failed_event() -> None:
    failed = {**_response("failed", None, []), "error": {"code": "api_error", "message": "web search failed"}}
    events = [
        *responses_stream()[:2],
        ("response.failed", {"type": "response.failed", "sequence_number": 2, "response": failed}),
    ]
    record = run("/v1/responses", RESPONSES_REQUEST, sse(events), SSE)
    assert (record.error, record.done_reason, record.complete) == ("web search failed", "failed", False)
    assert FLAG_ERROR_MID_STREAM in record.flags


def test_responses_error_event() -> None:
    events = [*responses_stream()[:4], ("error", {"type": "error", "code": "server_error", "message": "boom"})]
    record = run("/v1/responses", RESPONSES_REQUEST, sse(events), SSE)
    assert (record.error, record.complete, record.response_text) == ("boom", False, "")


def test_responses_non_streamed_body() -> None:
    output = [
        {"id": "rs_resp_1", "type": "reasoning", "summary": [{"type": "summary_text", "text": "Hmm."}]},
        {
            "id": "msg_1",
            "type": "message",
            "status": "completed",
            "role": "assistant",
            "content": [{"type": "output_text", "text": "Hello", "annotations": []}],
        },
    ]
    usage = {"input_tokens": 3, "output_tokens": 2, "total_tokens": 5, "input_tokens_details": {"cached_tokens": 0}}
    body = json.dumps(_response("completed", usage, output)).encode()
    record = run("/v1/responses", {**RESPONSES_REQUEST, "stream": False, "input": "Say hi"}, [body], JSON)
    assert (record.stream, record.prompt, record.thinking_text, record.response_text) == (
        False,
        "Say hi",
        "Hmm.",
        "Hello",
    )
    assert (record.prompt_eval_count, record.eval_count, record.prompt_eval_cached_count) == (3, 2, None)
    assert (record.complete, record.done_reason) == (True, "completed")


def test_a_capture_that_missed_the_request_still_reads_anthropic_and_responses_streams() -> None:
    for events, kind in ((anthropic_stream(), "messages"), (responses_stream(), "responses")):
        builder = InteractionBuilder(source="pcap")
        builder.response_started(T0, 200, SSE)
        for i, piece in enumerate(sse(events)):
            builder.response_body(piece, T0 + i * 0.01)
        record = builder.finish()
        assert (record.kind, record.complete) == (kind, True)
        assert record.thinking_text and record.response_text


# ------------------------------------------------------------------------------------------ requests


@pytest.mark.parametrize(
    ("path", "body", "expected"),
    [
        (
            "/api/chat",
            {
                "model": "m",
                "messages": [{"role": "user", "content": "x"}],
                "options": {"num_ctx": 8192, "num_predict": 64, "temperature": 0, "seed": 42},
                "keep_alive": "10m",
                "think": "high",
                "truncate": False,
                "shift": False,
                "logprobs": True,
                "format": {"type": "object"},
                "tools": [{}, {}],
            },
            (8192, 64, 0.0, 42, "10m", "high", False, False, True, True, 2),
        ),
        (
            "/api/generate",
            {"model": "m", "prompt": "x", "keep_alive": -1, "think": False},
            (None, None, None, None, "-1", "false", None, None, None, None, None),
        ),
        (
            "/v1/chat/completions",
            {
                "model": "m",
                "messages": [],
                "max_tokens": 9,
                "seed": 1,
                "reasoning_effort": "none",
                "response_format": {"type": "json_object"},
                "logprobs": True,
            },
            (None, 9, None, 1, None, "false", None, None, True, True, None),
        ),
        ("/v1/chat/completions", {"model": "m", "messages": [], "response_format": {"type": "text"}}, (None,) * 11),
        (
            "/v1/messages",
            {"model": "m", "max_tokens": 5, "output_config": {"effort": "xhigh"}, "messages": []},
            (None, 5, None, None, None, "high", None, None, None, None, None),
        ),
        (
            "/v1/responses",
            {"model": "m", "input": "x", "text": {"format": {"type": "json_schema"}}, "temperature": 1},
            (None, None, 1.0, None, None, None, None, None, None, True, None),
        ),
    ],
)
def test_request_options(path: str, body: dict[str, Any], expected: tuple[Any, ...]) -> None:
    record = run(path, body, [], JSON)
    names = (
        "num_ctx",
        "num_predict",
        "temperature",
        "seed",
        "keep_alive",
        "think",
        "truncate",
        "shift",
        "logprobs",
        "format",
        "tools",
    )
    assert tuple(getattr(record, f"opt_{n}") for n in names) == expected


LOAD_REPLY = {"model": "m", "created_at": "2026-01-01T00:00:00Z", "response": "", "done": True, "done_reason": "load"}


@pytest.mark.parametrize(
    ("path", "body", "kind"),
    [
        ("/api/generate", {"model": "m"}, "load"),
        ("/api/generate", {"model": "m", "prompt": ""}, "load"),
        ("/api/generate", {"model": "m", "keep_alive": 0}, "unload"),
        ("/api/generate", {"model": "m", "keep_alive": "0s"}, "unload"),
        ("/api/generate", {"model": "m", "keep_alive": "0m0s"}, "unload"),
        ("/api/generate", {"model": "m", "keep_alive": "5m"}, "load"),
        ("/api/chat", {"model": "m", "messages": []}, "load"),
        ("/api/chat", {"model": "m", "keep_alive": 0.0}, "unload"),
        ("/api/generate", {"model": "m", "prompt": "hi", "keep_alive": 0}, "generate"),
        ("/v1/chat/completions", {"model": "m", "messages": []}, "chat"),
    ],
)
def test_empty_prompt_is_model_management(path: str, body: dict[str, Any], kind: str) -> None:
    record = run(path, body, [json.dumps(LOAD_REPLY).encode()], JSON)
    assert record.kind == kind


def test_load_reply_without_the_request_is_still_load() -> None:
    builder = InteractionBuilder(source="pcap")
    builder.response_started(T0, 200, JSON)
    builder.response_body(json.dumps({**LOAD_REPLY, "done_reason": "unload"}).encode(), T0)
    assert builder.finish().kind == "unload"


@pytest.mark.parametrize("encoding", ["zstd", "gzip"])
def test_compressed_request_bodies_are_decoded(encoding: str) -> None:
    raw = json.dumps(RESPONSES_REQUEST).encode()
    packed = zstandard.ZstdCompressor().compress(raw) if encoding == "zstd" else gzip.compress(raw)
    headers = {"Content-Type": "application/json", "Content-Encoding": encoding}
    record = run("/v1/responses", packed, sse(responses_stream()), SSE, request_headers=headers)
    assert (record.prompt, record.system, record.opt_think, record.request_bytes) == (
        "Say hi",
        "Be brief.",
        "low",
        len(packed),
    )
    assert FLAG_ENCODED_BODY not in record.flags


def test_bad_zstd_is_flagged_not_raised() -> None:
    headers = {"Content-Type": "application/json", "Content-Encoding": "zstd"}
    record = run("/v1/responses", b"not zstd at all", [], JSON, request_headers=headers)
    assert FLAG_ENCODED_BODY in record.flags and record.prompt is None


def test_transcription_multipart_keeps_fields_not_audio() -> None:
    boundary = "XyZ"
    audio = bytes(range(256)) * 40
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="model"\r\n\r\nwhisper\r\n'
            f'--{boundary}\r\nContent-Disposition: form-data; name="prompt"\r\n\r\nmeeting notes\r\n'
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="a.wav"\r\n'
            "Content-Type: audio/wav\r\n\r\n"
        ).encode()
        + audio
        + f"\r\n--{boundary}--\r\n".encode()
    )
    headers = {"Content-Type": f"multipart/form-data; boundary={boundary}"}
    record = run("/v1/audio/transcriptions", body, [b'{"text":"Hello all."}\n'], JSON, request_headers=headers)
    assert (record.kind, record.model, record.prompt, record.response_text) == (
        "transcription",
        "whisper",
        "meeting notes",
        "Hello all.",
    )
    assert "\x00" not in record.to_json() and record.request_bytes == len(body)


def test_images_keep_sizes_not_pixels() -> None:
    reply = json.dumps({"created": 1, "data": [{"b64_json": "QUFB" * 5000}]}).encode()
    record = run("/v1/images/generations", {"model": "flux", "prompt": "a llama"}, [reply], JSON)
    assert (record.kind, record.model, record.prompt, record.response_text, record.complete) == (
        "images",
        "flux",
        "a llama",
        "",
        True,
    )
    assert record.response_bytes == len(reply) and "QUFB" not in record.to_json()


def test_anthropic_and_responses_images_are_redacted() -> None:
    data = "iVBORw0KGgo" * 100
    body = {
        **ANTHROPIC_REQUEST,
        "messages": [
            {
                "role": "user",
                "content": [{"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": data}}],
            }
        ],
    }
    assert data not in run("/v1/messages", body, [], JSON).to_json()
    image = {"type": "input_image", "image_url": f"data:image/png;base64,{data}"}
    body = {**RESPONSES_REQUEST, "input": [{"role": "user", "content": [image]}]}
    assert data not in run("/v1/responses", body, [], JSON).to_json()


def test_head_request_is_complete_without_a_body() -> None:
    builder = InteractionBuilder(source="pcap")
    builder.request_started(T0, "HEAD", "/api/version", {})
    builder.response_started(T0 + 0.001, 200, {**JSON, "Content-Length": "20"})
    record = builder.finish(T0 + 0.001)
    assert (record.method, record.kind, record.complete, record.flags) == ("HEAD", "version", True, [])


@pytest.mark.parametrize(
    ("model", "reply_extra", "remote"),
    [
        ("gpt-oss:120b-cloud", {}, True),
        ("deepseek-v3.1:cloud", {}, True),
        ("mine", {"remote_model": "gpt-oss:120b", "remote_host": "https://ollama.com:443"}, True),
        ("llama3.2:1b", {}, False),
        ("my-cloud/llama3", {}, False),
    ],
)
def test_remote_models(model: str, reply_extra: dict[str, Any], remote: bool) -> None:
    reply = {"model": model, "message": {"role": "assistant", "content": "x"}, "done": True, "done_reason": "stop"}
    record = run(
        "/api/chat",
        {"model": model, "messages": [{"role": "user", "content": "x"}], "stream": False},
        [json.dumps({**reply, **reply_extra}).encode()],
        JSON,
    )
    assert record.remote is remote
    assert (FLAG_REMOTE_MODEL in record.flags) is remote
    assert (record.remote_model, record.remote_host) == (
        reply_extra.get("remote_model"),
        reply_extra.get("remote_host"),
    )


def test_native_cached_count() -> None:
    reply = {"model": "m", "response": "x", "done": True, "prompt_eval_count": 21, "prompt_eval_cached_count": 16}
    record = run("/api/generate", {"model": "m", "prompt": "x", "stream": False}, [json.dumps(reply).encode()], JSON)
    assert (record.prompt_eval_count, record.prompt_eval_cached_count) == (21, 16)
