"""The protocol core: every body shape, in every fragmentation, gives the same record."""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator

import pytest

from analyzer.protocol.interaction import InteractionBuilder
from analyzer.protocol.record import InteractionRecord

TOKENS = ["Hel", "lo", ", ", "café", " →", " 🦙", " 日本", "!"]
NDJSON = {"Content-Type": "application/x-ndjson"}
SSE = {"Content-Type": "text/event-stream"}
JSON = {"Content-Type": "application/json; charset=utf-8"}


def native_stream(kind: str = "generate", tokens: list[str] = TOKENS, *, final: bool = True) -> bytes:
    lines = []
    for t in tokens:
        piece = {"response": t} if kind == "generate" else {"message": {"role": "assistant", "content": t}}
        lines.append({"model": "m:1", "created_at": "2024-08-01T12:00:00.123456789Z", **piece, "done": False})
    if final:
        last = {"response": ""} if kind == "generate" else {"message": {"role": "assistant", "content": ""}}
        lines.append(
            {
                "model": "m:1",
                "created_at": "2024-08-01T12:00:01.5Z",
                **last,
                "done": True,
                "done_reason": "stop",
                "total_duration": 2_000_000_000,
                "load_duration": 100_000_000,
                "prompt_eval_count": 10,
                "prompt_eval_duration": 50_000_000,
                "eval_count": len(tokens),
                "eval_duration": 1_000_000_000,
            }
        )
    return b"".join(json.dumps(o, ensure_ascii=False, separators=(",", ":")).encode() + b"\n" for o in lines)


def sse_stream(tokens: list[str] = TOKENS, *, usage: bool = True) -> bytes:
    events = []
    for i, t in enumerate(tokens):
        delta = {"role": "assistant", "content": t} if i == 0 else {"content": t}
        events.append(
            {
                "id": "chatcmpl-1",
                "object": "chat.completion.chunk",
                "model": "m:1",
                "choices": [{"index": 0, "delta": delta, "finish_reason": None}],
            }
        )
    events.append(
        {
            "id": "chatcmpl-1",
            "object": "chat.completion.chunk",
            "model": "m:1",
            "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
        }
    )
    if usage:
        events.append(
            {
                "id": "chatcmpl-1",
                "object": "chat.completion.chunk",
                "model": "m:1",
                "choices": [],
                "usage": {"prompt_tokens": 7, "completion_tokens": len(tokens), "total_tokens": 7 + len(tokens)},
            }
        )
    out = b"".join(b"data: " + json.dumps(e, ensure_ascii=False).encode() + b"\n\n" for e in events)
    return out + b"data: [DONE]\n\n"


def fragmentations(body: bytes) -> Iterator[tuple[str, list[bytes]]]:
    yield "whole", [body]
    yield "byte-by-byte", [body[i : i + 1] for i in range(len(body))]
    for size in (2, 3, 7, 64):
        yield f"size-{size}", [body[i : i + size] for i in range(0, len(body), size)]
    lines = body.split(b"\n")
    yield "per-line", [line + b"\n" for line in lines[:-1]] + ([lines[-1]] if lines[-1] else [])


def build(
    path: str,
    request: dict,
    headers: dict,
    fragments: list[bytes],
    *,
    status: int = 200,
    t0: float = 1000.0,
    step: float = 0.01,
) -> InteractionRecord:
    b = InteractionBuilder(source="proxy", client="127.0.0.1:5000", server="127.0.0.1:11434")
    b.request_started(t0, "POST", path, {"Content-Type": "application/json"})
    b.request_body(json.dumps(request).encode(), t0)
    b.response_started(t0 + 0.05, status, headers)
    t = t0 + 0.05
    for frag in fragments:
        t += step
        b.response_body(frag, t)
    return b.finish(t)


@pytest.mark.parametrize("name,frags", list(fragmentations(native_stream("generate"))))
def test_generate_stream_any_fragmentation(name: str, frags: list[bytes]) -> None:
    rec = build("/api/generate", {"model": "m:1", "prompt": "Say hi", "system": "Be brief"}, NDJSON, frags)
    assert rec.response_text == "".join(TOKENS)
    assert (rec.api, rec.kind, rec.model, rec.stream) == ("ollama", "generate", "m:1", True)
    assert (rec.prompt, rec.system) == ("Say hi", "Be brief")
    assert rec.complete and rec.done_reason == "stop" and rec.flags == []
    assert rec.chunks == len(TOKENS) + 1
    assert rec.eval_count == len(TOKENS) and rec.prompt_eval_count == 10
    assert rec.eval_duration_ms == 1000.0 and rec.total_duration_ms == 2000.0
    assert rec.eval_tokens_per_s == pytest.approx(len(TOKENS))
    assert rec.prompt_tokens_per_s == pytest.approx(200.0)
    assert rec.ttfb_ms == pytest.approx(50.0)
    assert rec.ttft_ms is not None and rec.ttft_ms > rec.ttfb_ms
    assert rec.total_ms is not None and rec.total_ms >= rec.ttft_ms
    assert rec.response_bytes == len(native_stream("generate"))
    assert rec.started_at == "1970-01-01T00:16:40.000000Z"


@pytest.mark.parametrize("name,frags", list(fragmentations(native_stream("chat"))))
def test_chat_stream_any_fragmentation(name: str, frags: list[bytes]) -> None:
    messages = [
        {"role": "system", "content": "sys"},
        {"role": "user", "content": "first"},
        {"role": "assistant", "content": "ok"},
        {"role": "user", "content": "second"},
    ]
    rec = build("/api/chat", {"model": "m:1", "messages": messages}, NDJSON, frags)
    assert rec.response_text == "".join(TOKENS)
    assert (rec.kind, rec.prompt, rec.system, rec.messages) == ("chat", "second", "sys", messages)
    assert rec.complete


@pytest.mark.parametrize("name,frags", list(fragmentations(sse_stream())))
def test_openai_sse_any_fragmentation(name: str, frags: list[bytes]) -> None:
    rec = build(
        "/v1/chat/completions",
        {"model": "m:1", "stream": True, "messages": [{"role": "user", "content": "hi"}]},
        SSE,
        frags,
    )
    assert rec.response_text == "".join(TOKENS)
    assert (rec.api, rec.kind, rec.stream, rec.done_reason) == ("openai", "chat", True, "stop")
    assert rec.prompt_eval_count == 7 and rec.eval_count == len(TOKENS)
    assert rec.complete and rec.chunks == len(TOKENS) + 2


def test_sse_without_usage_and_without_done_is_incomplete() -> None:
    body = sse_stream(usage=False).replace(b"data: [DONE]\n\n", b"")
    rec = build("/v1/chat/completions", {"model": "m:1", "stream": True, "messages": []}, SSE, [body])
    assert rec.response_text == "".join(TOKENS) and rec.eval_count is None and not rec.complete


def test_ttft_is_first_content_token_not_first_byte() -> None:
    # Two empty-content chunks first (role announcement, empty thinking), then tokens.
    empty = b'{"model":"m","created_at":"x","response":"","done":false}\n'
    body = native_stream("generate")
    frags = [empty, empty, body]
    rec = build("/api/generate", {"model": "m", "prompt": "p"}, NDJSON, frags, t0=0.0, step=0.1)
    # response starts at 0.05; fragments at 0.15, 0.25, 0.35: the token arrives with the third.
    assert rec.ttft_ms == pytest.approx(350.0)
    assert rec.ttfb_ms == pytest.approx(50.0)


def test_gap_statistics_and_wire_rate() -> None:
    lines = native_stream("generate").split(b"\n")
    frags = [line + b"\n" for line in lines if line]
    rec = build("/api/generate", {"model": "m", "prompt": "p"}, NDJSON, frags, t0=0.0, step=0.02)
    assert rec.gap_p50_ms == pytest.approx(20.0) and rec.gap_max_ms == pytest.approx(20.0)
    assert rec.gen_ms == pytest.approx(20.0 * (len(TOKENS) - 1))
    assert rec.wire_tokens_per_s == pytest.approx(50.0)


def test_thinking_and_tool_calls() -> None:
    objs = [
        {"message": {"role": "assistant", "content": "", "thinking": "hmm "}, "done": False},
        {"message": {"role": "assistant", "content": "", "thinking": "ok"}, "done": False},
        {
            "message": {
                "role": "assistant",
                "content": "",
                "tool_calls": [{"function": {"name": "f", "arguments": {"x": 1}}}],
            },
            "done": False,
        },
        {"message": {"role": "assistant", "content": "done"}, "done": True, "done_reason": "stop"},
    ]
    body = b"".join(json.dumps(o).encode() + b"\n" for o in objs)
    rec = build(
        "/api/chat",
        {"model": "m", "messages": [{"role": "user", "content": "q"}], "think": True},
        NDJSON,
        [body[i : i + 5] for i in range(0, len(body), 5)],
    )
    assert rec.thinking_text == "hmm ok" and rec.response_text == "done"
    assert rec.tool_calls == [{"function": {"name": "f", "arguments": {"x": 1}}}]


def test_openai_streamed_tool_call_deltas_are_merged() -> None:
    chunks = [
        {
            "object": "chat.completion.chunk",
            "choices": [
                {
                    "index": 0,
                    "delta": {
                        "tool_calls": [
                            {
                                "index": 0,
                                "id": "call_1",
                                "type": "function",
                                "function": {"name": "get", "arguments": '{"a"'},
                            }
                        ]
                    },
                }
            ],
        },
        {
            "object": "chat.completion.chunk",
            "choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "function": {"arguments": ": 1}"}}]}}],
        },
        {"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]},
    ]
    body = b"".join(b"data: " + json.dumps(c).encode() + b"\n\n" for c in chunks) + b"data: [DONE]\n\n"
    rec = build("/v1/chat/completions", {"model": "m", "stream": True, "messages": []}, SSE, [body])
    assert rec.tool_calls == [
        {"index": 0, "id": "call_1", "type": "function", "function": {"name": "get", "arguments": '{"a": 1}'}}
    ]
    assert rec.done_reason == "tool_calls" and rec.complete


def test_error_before_stream() -> None:
    body = b'{"error":"model \'nope\' not found"}'
    rec = build("/api/generate", {"model": "nope", "prompt": "p"}, JSON, [body], status=404)
    assert rec.status == 404 and rec.error == "model 'nope' not found" and rec.response_text == ""
    assert rec.stream is True  # what the request asked for
    assert "error_mid_stream" not in rec.flags


def test_openai_error_object() -> None:
    body = b'{"error":{"message":"model \\"x\\" not found","type":"not_found_error","param":null,"code":null}}'
    rec = build("/v1/chat/completions", {"model": "x", "messages": []}, JSON, [body], status=404)
    assert rec.error == 'model "x" not found' and rec.api == "openai"


def test_error_mid_stream_keeps_partial_text() -> None:
    body = native_stream("generate", final=False) + b'{"error":"out of memory"}\n'
    for _, frags in fragmentations(body):
        rec = build("/api/generate", {"model": "m", "prompt": "p"}, NDJSON, frags)
        assert rec.status == 200 and rec.error == "out of memory"
        assert rec.response_text == "".join(TOKENS)
        assert "error_mid_stream" in rec.flags and not rec.complete


def test_non_stream_json_above_and_below_2048() -> None:
    for text in ("short answer", "x" * 5000):
        obj = {
            "model": "m",
            "response": text,
            "done": True,
            "done_reason": "stop",
            "eval_count": 3,
            "eval_duration": 3_000_000,
        }
        body = json.dumps(obj).encode()
        for _, frags in fragmentations(body):
            rec = build("/api/generate", {"model": "m", "prompt": "p", "stream": False}, JSON, frags)
            assert rec.response_text == text and rec.stream is False and rec.complete and rec.chunks == 1
            assert rec.ttft_ms == rec.total_ms  # the token arrives with the last byte of a single body


def test_openai_non_stream_and_completions() -> None:
    chat = {
        "object": "chat.completion",
        "model": "m",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "yes"}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 4, "completion_tokens": 1, "total_tokens": 5},
    }
    rec = build(
        "/v1/chat/completions",
        {"model": "m", "messages": [{"role": "user", "content": "q"}]},
        JSON,
        [json.dumps(chat).encode()],
    )
    assert (rec.response_text, rec.eval_count, rec.stream, rec.kind) == ("yes", 1, False, "chat")
    comp = {
        "object": "text_completion",
        "model": "m",
        "choices": [{"index": 0, "text": "abc", "finish_reason": "stop"}],
    }
    rec = build("/v1/completions", {"model": "m", "prompt": "p"}, JSON, [json.dumps(comp).encode()])
    assert (rec.response_text, rec.kind, rec.prompt) == ("abc", "generate", "p")


def test_pull_progress_stream() -> None:
    objs = [
        {"status": "pulling manifest"},
        {"status": "pulling abc", "digest": "sha256:abc", "total": 100, "completed": 50},
        {"status": "verifying sha256 digest"},
        {"status": "success"},
    ]
    body = b"".join(json.dumps(o).encode() + b"\n" for o in objs)
    rec = build("/api/pull", {"model": "m"}, NDJSON, [body])
    assert rec.kind == "pull" and rec.complete and rec.response_text == "success" and rec.chunks == 4
    assert rec.ttft_ms is None


def test_single_object_endpoints() -> None:
    rec = build("/api/embed", {"model": "m", "input": "hello"}, JSON, [b'{"model":"m","embeddings":[[0.1,0.2]]}'])
    assert rec.kind == "embed" and rec.prompt == "hello" and rec.complete
    # Ollama's /api/embed reply carries its counters without `done` (seen on v0.24.0).
    reply = b'{"model":"m","embeddings":[[0.1]],"total_duration":5000000,"load_duration":1000000,"prompt_eval_count":3}'
    rec = build("/api/embed", {"model": "m", "input": "hello"}, JSON, [reply])
    assert (rec.prompt_eval_count, rec.total_duration_ms, rec.load_duration_ms) == (3, 5.0, 1.0)
    b = InteractionBuilder(source="proxy")
    b.request_started(1.0, "GET", "/api/version", {})
    b.response_started(1.001, 200, JSON)
    b.response_body(b'{"version":"0.12.0"}', 1.002)
    rec = b.finish(1.002)
    assert rec.kind == "version" and rec.complete and rec.request_bytes == 0 and rec.response_bytes == 20


def test_load_only_request() -> None:
    body = b'{"model":"m","created_at":"x","response":"","done":true,"done_reason":"load"}'
    rec = build("/api/generate", {"model": "m"}, JSON, [body])
    assert rec.done_reason == "load" and rec.response_text == "" and rec.ttft_ms is None and rec.complete


def test_client_abort_keeps_partial_text() -> None:
    body = native_stream("generate", final=False)
    b = InteractionBuilder(source="proxy")
    b.request_started(0.0, "POST", "/api/generate", {})
    b.request_body(b'{"model":"m","prompt":"p"}', 0.0)
    b.response_started(0.1, 200, NDJSON)
    b.response_body(body[:-10], 0.2)
    b.add_flags(["client_aborted"])
    rec = b.finish(0.3)
    assert not rec.complete and "client_aborted" in rec.flags
    assert "".join(TOKENS).startswith(rec.response_text) and rec.response_text


def test_capture_started_mid_response_resyncs_ndjson_and_sse() -> None:
    body = native_stream("chat")
    cut = body.index(b"\n") + 5  # start inside the second line
    b = InteractionBuilder(source="pcap")
    b.response_started(1.0, None, None, mid_response=True)
    b.response_body(body[cut:], 1.0)
    rec = b.finish(1.0)
    assert rec.kind == "chat" and rec.api == "ollama" and rec.response_text == "".join(TOKENS[2:])
    assert "capture_started_mid_response" in rec.flags and rec.complete
    assert rec.started_at  # from the first captured byte

    body = sse_stream()
    cut = body.index(b"\n\n") + 10
    b = InteractionBuilder(source="pcap")
    b.response_started(1.0, None, None, mid_response=True)
    for i in range(cut, len(body), 3):
        b.response_body(body[i : i + 3], 1.0 + i / 1e4)
    rec = b.finish()
    assert rec.api == "openai" and rec.response_text == "".join(TOKENS[2:]) and rec.complete


def test_capture_starting_exactly_on_a_line_keeps_that_line() -> None:
    body = native_stream("generate")
    cut = body.index(b"\n") + 1
    b = InteractionBuilder(source="pcap")
    b.response_started(1.0, None, None, mid_response=True)
    b.response_body(body[cut:], 1.0)
    rec = b.finish(1.0)
    assert rec.response_text == "".join(TOKENS[1:]) and "unparsable_line" not in rec.flags


def test_truncation_cap_flags_and_bounds_text() -> None:
    b = InteractionBuilder(source="proxy", max_text_chars=10)
    b.request_started(0.0, "POST", "/api/generate", {})
    b.response_started(0.1, 200, NDJSON)
    b.response_body(native_stream("generate"), 0.2)
    rec = b.finish(0.3)
    assert len(rec.response_text) == 10 and "truncated_body" in rec.flags
    assert "".join(TOKENS).startswith(rec.response_text)


def test_garbage_lines_are_flagged_not_fatal() -> None:
    body = b"not json\n" + native_stream("generate")
    rec = build("/api/generate", {"model": "m", "prompt": "p"}, NDJSON, [body])
    assert "unparsable_line" in rec.flags and rec.response_text == "".join(TOKENS)


def test_gzip_encoded_json_body() -> None:
    import gzip

    obj = {"model": "m", "response": "zipped", "done": True}
    body = gzip.compress(json.dumps(obj).encode())
    rec = build(
        "/api/generate",
        {"model": "m", "prompt": "p", "stream": False},
        {**JSON, "Content-Encoding": "gzip"},
        [body[i : i + 4] for i in range(0, len(body), 4)],
    )
    assert rec.response_text == "zipped" and rec.response_bytes == len(body)


def test_redaction_modes() -> None:
    msgs = [{"role": "user", "content": "secret", "images": ["aGVsbG8="]}]
    image = "<image 8 chars sha256:333d6b3a3c1f5db6c9bdda5939b136986d170f4649172a68368d54ecb44c2ff2>"
    hashed = "sha256:2bb80d537b1da3e38bd30361aa855686bde0eacd7162fef6a25fe97bf527a25b"  # of "secret"
    for mode, check in [
        ("none", lambda r: r.messages == msgs and r.response_text == "".join(TOKENS) and r.flags == []),
        ("images", lambda r: r.messages[0]["images"] == [image] and r.prompt == "secret" and r.flags == []),
        ("hash", lambda r: r.prompt == hashed and r.response_text.startswith("sha256:") and r.flags == ["redacted"]),
        ("drop", lambda r: (r.prompt, r.response_text, r.messages, r.flags) == (None, "", None, ["redacted"])),
    ]:
        b = InteractionBuilder(source="proxy", redaction=mode)
        b.request_started(0.0, "POST", "/api/chat", {})
        b.request_body(json.dumps({"model": "m", "messages": msgs}).encode(), 0.0)
        b.response_started(0.1, 200, NDJSON)
        b.response_body(native_stream("chat"), 0.2)
        assert check(b.finish(0.2)), mode


def test_lone_surrogates_become_replacement_characters() -> None:
    request = b'{"model":"m","prompt":"bad \\ud800 and good \\ud83e\\udd99"}'
    b = InteractionBuilder(source="proxy")
    b.request_started(0.0, "POST", "/api/generate", {})
    b.request_body(request, 0.0)
    b.response_started(0.1, 200, NDJSON)
    b.response_body(b'{"response":"x\\udc00","done":false}\n{"done":true,"done_reason":"stop"}\n', 0.2)
    rec = b.finish(0.2)
    assert rec.prompt == "bad \ufffd and good 🦙" and rec.response_text == "x\ufffd"
    rec.to_json().encode("utf-8")  # writable as UTF-8


def test_client_closing_right_after_done_is_not_an_abort() -> None:
    b = InteractionBuilder(source="proxy")
    b.request_started(0.0, "POST", "/v1/chat/completions", {})
    b.request_body(b'{"model":"m","stream":true,"messages":[]}', 0.0)
    b.response_started(0.1, 200, SSE)
    b.response_body(sse_stream(), 0.2)
    b.add_flags(["client_aborted"])  # the openai client hangs up after [DONE], before the last empty chunk
    rec = b.finish(0.3)
    assert rec.complete and "client_aborted" not in rec.flags


def test_error_null_is_not_an_error() -> None:
    body = b'{"model":"m","response":"hi","error":null,"done":false}\n{"model":"m","done":true,"error":null}\n'
    rec = build("/api/generate", {"model": "m", "prompt": "p"}, NDJSON, [body])
    assert rec.error is None and rec.response_text == "hi" and rec.complete


def test_get_endpoints_are_not_streams() -> None:
    b = InteractionBuilder(source="proxy")
    b.request_started(1.0, "GET", "/api/tags", {})
    b.response_started(1.001, 200, JSON)
    b.response_body(b'{"models":[]}', 1.002)
    assert b.finish(1.002).stream is False


def test_large_json_body_beyond_the_text_cap_still_parses() -> None:
    body = json.dumps({"model": "m", "embeddings": [[0.123456] * 50_000]}).encode()
    b = InteractionBuilder(source="proxy", max_text_chars=1000)
    b.request_started(0.0, "POST", "/api/embed", {})
    b.response_started(0.1, 200, JSON)
    b.response_body(body, 0.2)
    rec = b.finish(0.2)
    assert rec.complete and rec.flags == [] and rec.response_bytes == len(body)


def test_gzip_request_body_is_inflated_before_it_is_read() -> None:
    raw = json.dumps({"model": "m", "prompt": "squeezed", "stream": False}).encode()
    wire = gzip.compress(raw)
    b = InteractionBuilder(source="proxy")
    b.request_started(0.0, "POST", "/api/generate", {"Content-Encoding": "gzip"})
    b.request_body(wire[:5], 0.01)
    b.request_body(wire[5:], 0.02)
    b.response_started(0.1, 200, JSON)
    b.response_body(b'{"model":"m","response":"ok","done":true}', 0.2)
    rec = b.finish(0.2)
    assert (rec.prompt, rec.stream, rec.request_bytes, rec.flags) == ("squeezed", False, len(wire), [])


def test_unreadable_request_encoding_is_flagged_and_the_response_still_read() -> None:
    b = InteractionBuilder(source="proxy")
    b.request_started(0.0, "POST", "/api/generate", {"content-encoding": "br"})
    b.request_body(b"\x8b\x01\x80opaque", 0.01)
    b.response_started(0.1, 200, NDJSON)
    b.response_body(native_stream(tokens=["a", "b"]), 0.2)
    rec = b.finish(0.2)
    assert (rec.prompt, rec.response_text, rec.complete, rec.flags) == (None, "ab", True, ["encoded_body"])


def test_a_compressed_request_inflates_only_up_to_the_request_cap() -> None:
    wire = gzip.compress(b'{"model":"m","prompt":"' + b"0" * 20_000_000 + b'"}', 1)
    b = InteractionBuilder(source="proxy", max_request_bytes=1000)
    b.request_started(0.0, "POST", "/api/generate", {"Content-Encoding": "gzip"})
    for start in range(0, len(wire), 4096):
        b.request_body(wire[start : start + 4096], 0.01)
    b.response_started(0.1, 200, JSON)
    b.response_body(b'{"model":"m","response":"ok","done":true}', 0.2)
    rec = b.finish(0.2)
    assert (rec.request_bytes, rec.flags, rec.response_text) == (len(wire), ["truncated_body"], "ok")
    assert len(b._request_body) == 1000


def test_a_compressed_stream_is_read_whole_in_bounded_steps() -> None:
    lines = native_stream(tokens=["x" * 1000] * 3000)  # ~3 MB of NDJSON, inflated 1 MiB at a time
    wire = gzip.compress(lines, 9)
    b = InteractionBuilder(source="proxy")
    b.request_started(0.0, "POST", "/api/generate", {})
    b.response_started(0.1, 200, {**NDJSON, "Content-Encoding": "gzip"})
    b.response_body(wire, 0.2)
    rec = b.finish(0.2)
    assert len(wire) < 1024 * 1024 < len(lines)
    assert (rec.response_text, rec.chunks, rec.complete, rec.flags) == ("x" * 3_000_000, 3001, True, [])


@pytest.mark.parametrize(
    ("depth", "kept", "flags"),
    [
        (100, True, []),
        (101, False, ["truncated_body"]),  # deeper than MAX_NESTING: left out, said so
        (100_000, False, ["unparsable_line"]),  # deeper than the JSON parser goes: not a crash
    ],
)
def test_deeply_nested_messages_never_break_the_record(depth: int, kept: bool, flags: list[str]) -> None:
    """Only a hostile body nests this deep; the record must still be made, on any interpreter, and be writable."""
    nested = b"[" * depth + b"]" * depth
    b = InteractionBuilder(source="proxy")
    b.request_started(0.0, "POST", "/api/chat", {})
    b.request_body(b'{"model":"m","messages":' + nested + b"}", 0.01)
    b.response_started(0.1, 200, NDJSON)
    b.response_body(b'{"message":{"content":"a","tool_calls":' + nested + b'},"done":false}\n{"done":true}\n', 0.2)
    rec = b.finish(0.3)
    assert json.loads(rec.to_json())["id"] == rec.id
    expected = json.loads(nested) if kept else None
    assert (rec.messages, rec.tool_calls or None, rec.flags) == (expected, expected, flags)
    assert rec.response_text == ("" if depth > 1000 else "a")


def test_embed_keeps_ollamas_counters() -> None:
    """/api/embed answers without ``done``: its total/load durations and prompt count still reach the record, so an
    embedding model's loads and reloads show (and its hidden wait stays unknown: embed reports no eval parts)."""
    body = (
        b'{"model":"nomic-embed-text","embeddings":[[0.1,0.2]],"total_duration":1450000000,'
        b'"load_duration":1300000000,"prompt_eval_count":7}'
    )
    rec = build("/api/embed", {"model": "nomic-embed-text", "input": "hello"}, JSON, [body])
    assert (rec.total_duration_ms, rec.load_duration_ms, rec.prompt_eval_count) == (1450.0, 1300.0, 7)
    assert rec.prompt_eval_duration_ms is None and rec.eval_duration_ms is None
