"""The emulator over real loopback sockets: exact framing first, then the official clients."""

from __future__ import annotations

import asyncio
import json
import re
import signal
import socket
import subprocess
import sys
from typing import Any

import ollama
import openai
import pytest

from analyzer.emulator import EmulatorConfig, EmulatorThread, expected_text, plan_reply
from analyzer.emulator.examples import WEATHER_TOOL
from analyzer.emulator.http11 import Request, ResponseWriter
from tests.support.defaults import MODEL
from tests.support.rawhttp import HttpConnection, RawResponse

CREATED_AT = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?Z$")


def Connection(emu: EmulatorThread) -> HttpConnection:
    """A raw keep-alive connection to ``emu``."""
    return HttpConnection(emu.host, emu.port)


@pytest.fixture
def conn(emulator: EmulatorThread):
    connection = HttpConnection(emulator.host, emulator.port)
    yield connection
    connection.close()


@pytest.fixture
def native(emulator: EmulatorThread):
    """The official ollama client pointed at the shared emulator."""
    with ollama.Client(host=emulator.url) as client:
        yield client


@pytest.fixture
def oai(emulator: EmulatorThread):
    """The official openai client pointed at the shared emulator."""
    with openai.OpenAI(base_url=emulator.url + "/v1", api_key="x") as client:
        yield client


def ndjson(response: RawResponse) -> list[dict[str, Any]]:
    return [json.loads(line) for line in response.body.decode().splitlines()]


# --- framing -------------------------------------------------------------------------------------------


def test_native_stream_is_one_json_line_per_chunk(emulator: EmulatorThread, conn: HttpConnection) -> None:
    body = {"model": MODEL, "prompt": "Why is the sky blue?"}
    response = conn.request("POST", "/api/generate", body)
    assert response.status == 200
    assert response.header_names == ["Content-Type", "Date", "Transfer-Encoding"]
    assert response.headers["content-type"] == "application/x-ndjson"
    for chunk in response.chunks:
        assert chunk.endswith(b"\n") and chunk.count(b"\n") == 1
        assert b" " not in chunk.replace(b'"', b"").split(b":")[0]  # compact keys, no pretty-printing
    objects = [json.loads(c) for c in response.chunks]
    plan = plan_reply("generate", body, emulator.config)
    assert len(objects) == len(plan.content) + 1
    assert "".join(o["response"] for o in objects) == expected_text("generate", body, emulator.config)
    assert all(o["model"] == MODEL and CREATED_AT.match(o["created_at"]) for o in objects)
    assert [o["done"] for o in objects] == [False] * len(plan.content) + [True]
    final = objects[-1]
    assert final["done_reason"] == "stop"
    assert final["eval_count"] == len(plan.content) == emulator.config.tokens
    assert final["prompt_eval_count"] == plan.prompt_tokens
    assert isinstance(final["context"], list) and all(isinstance(i, int) for i in final["context"])
    for key in ("total_duration", "load_duration", "prompt_eval_duration", "eval_duration"):
        assert isinstance(final[key], int) and final[key] > 0
    assert final["total_duration"] >= final["prompt_eval_duration"] + final["eval_duration"]


def test_keep_alive_serves_many_requests_on_one_connection(conn: HttpConnection) -> None:
    assert conn.request("GET", "/").body == b"Ollama is running"
    streamed = conn.request("POST", "/api/chat", {"model": MODEL, "messages": [{"role": "user", "content": "hi"}]})
    assert ndjson(streamed)[-1]["done"] is True
    tags = conn.request("GET", "/api/tags")
    assert tags.headers["content-type"] == "application/json; charset=utf-8"
    assert {m["name"] for m in tags.json()["models"]} == {"llama3.2:1b", "qwen3:0.6b"}
    whole = conn.request("POST", "/api/generate", {"model": MODEL, "prompt": "x", "stream": False})
    assert whole.json()["done"] is True
    head = conn.request("HEAD", "/")
    assert head.headers["content-length"] == "17"
    assert conn.request("GET", "/api/version").json()["version"]
    last = conn.request("GET", "/api/ps", connection="close")
    assert last.headers["connection"] == "close"
    assert MODEL in {m["name"] for m in last.json()["models"]}
    assert conn.at_eof()


def test_http10_gets_close_delimited_reply(emulator: EmulatorThread) -> None:
    conn = HttpConnection(emulator.host, emulator.port)
    body = json.dumps({"model": MODEL, "prompt": "old client"}).encode()
    conn.send(b"POST /api/generate HTTP/1.0\r\nContent-Length: %d\r\n\r\n%b" % (len(body), body))
    response = conn.read_response()
    conn.close()
    assert response.version == "HTTP/1.0"
    assert "transfer-encoding" not in response.headers and "connection" not in response.headers
    lines = ndjson(response)
    assert "".join(o["response"] for o in lines) == expected_text("generate", json.loads(body), emulator.config)


def test_chunked_request_body_is_read(emulator: EmulatorThread, conn: HttpConnection) -> None:
    body = json.dumps({"model": MODEL, "prompt": "chunked upload", "stream": False}).encode()
    half = len(body) // 2
    framed = b"%x\r\n%b\r\n%x;ext=1\r\n%b\r\n0\r\n\r\n" % (half, body[:half], len(body) - half, body[half:])
    conn.send(b"POST /api/generate HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n" + framed)
    response = conn.read_response()
    assert response.json()["response"] == expected_text("generate", json.loads(body), emulator.config)
    assert conn.request("GET", "/").status == 200  # connection still usable


def test_content_length_only_up_to_2048_bytes(emulator_factory) -> None:
    emu = emulator_factory(prefill_ms=0, token_ms=0)
    conn = HttpConnection(emu.host, emu.port)
    seen = set()
    for count in range(0, 400, 7):
        body = {"model": MODEL, "prompt": "size", "stream": False, "options": {"emulator_tokens": count}}
        response = conn.request("POST", "/api/generate", body)
        assert response.headers["content-type"] == "application/json; charset=utf-8"
        if "content-length" in response.headers:
            assert len(response.body) <= 2048
            seen.add("length")
        else:
            assert response.headers["transfer-encoding"] == "chunked"
            assert len(response.body) > 2048 and len(response.chunks) == 1
            seen.add("chunked")
    conn.close()
    assert seen == {"length", "chunked"}


@pytest.mark.parametrize(("size", "framing"), [(2048, "content-length"), (2049, "transfer-encoding")])
def test_response_writer_boundary(size: int, framing: str) -> None:
    async def run() -> bytes:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await ResponseWriter(Request("GET", "/", "HTTP/1.1"), writer).send(200, "text/plain", b"x" * size)
            writer.close()

        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        data = await reader.read()
        writer.close()
        server.close()
        await server.wait_closed()
        return data

    head = asyncio.run(run()).split(b"\r\n\r\n", 1)[0].decode().lower()
    assert framing in head


def test_errors_before_the_stream(conn: HttpConnection) -> None:
    missing = conn.request("POST", "/api/generate", {"model": "nope:1b", "prompt": "x"})
    assert missing.status == 404 and missing.json() == {"error": "model 'nope:1b' not found"}
    assert missing.headers["content-type"] == "application/json; charset=utf-8"
    bad = conn.request("POST", "/api/chat", b"{not json")
    assert bad.status == 400 and "error" in bad.json()
    unknown = conn.request("GET", "/api/nothing")
    assert (unknown.status, unknown.body, unknown.headers["content-type"]) == (404, b"404 page not found", "text/plain")
    openai_missing = conn.request("POST", "/v1/chat/completions", {"model": "nope", "messages": []})
    assert openai_missing.json()["error"]["type"] == "not_found_error"
    failing = conn.request(
        "POST", "/api/generate", {"model": MODEL, "prompt": "x", "options": {"emulator_fail_status": 503}}
    )
    assert failing.status == 503 and "error" in failing.json()


def test_empty_prompt_just_loads(conn: HttpConnection) -> None:
    response = conn.request("POST", "/api/generate", {"model": MODEL, "prompt": ""})
    assert response.headers["content-type"] == "application/json; charset=utf-8"
    reply = response.json()
    assert (reply["done"], reply["done_reason"], reply["response"]) == (True, "load", "")
    chat = conn.request("POST", "/api/chat", {"model": MODEL, "messages": []}).json()
    assert chat["done_reason"] == "load" and chat["message"] == {"role": "assistant", "content": ""}


def test_mid_stream_error_keeps_status_200(conn: HttpConnection) -> None:
    body = {"model": MODEL, "prompt": "fail", "options": {"emulator_error_after": 3}}
    response = conn.request("POST", "/api/generate", body)
    lines = ndjson(response)
    assert response.status == 200 and response.complete
    assert len(lines) == 4 and set(lines[-1]) == {"error"}
    sse = conn.request(
        "POST", "/v1/completions", {"model": MODEL, "prompt": "fail", "stream": True, "emulator_error_after": 2}
    )
    events = sse.body.decode().split("\n\n")
    assert sse.status == 200 and events[-1] == ""
    assert json.loads(events[-2].removeprefix("data: "))["error"]["type"] == "api_error"
    assert b"[DONE]" not in sse.body


def test_close_after_drops_connection_mid_stream(emulator: EmulatorThread, conn: HttpConnection) -> None:
    response = conn.request(
        "POST",
        "/api/chat",
        {"model": MODEL, "messages": [{"role": "user", "content": "x"}], "options": {"emulator_close_after": 2}},
    )
    assert not response.complete and len(response.chunks) == 2


def test_go_json_escaping_and_utf8_on_the_wire(emulator: EmulatorThread, conn: HttpConnection) -> None:
    prompt = next(
        p for p in (f"p{i}" for i in range(500)) if "<tag>" in expected_text("generate", {"model": MODEL, "prompt": p})
    )
    body = {"model": MODEL, "prompt": prompt, "stream": False}
    raw = conn.request("POST", "/api/generate", body).body
    assert b"\\u003ctag\\u003e" in raw and b"<tag>" not in raw
    assert json.loads(raw)["response"] == expected_text("generate", body, emulator.config)


def test_num_predict_cuts_text_with_done_reason_length(emulator: EmulatorThread, conn: HttpConnection) -> None:
    full = {"model": MODEL, "prompt": "limit", "stream": False}
    short = {**full, "options": {"num_predict": 5}}
    reply = conn.request("POST", "/api/generate", short).json()
    assert reply["done_reason"] == "length" and reply["eval_count"] == 5
    assert expected_text("generate", full).startswith(reply["response"])


def test_metrics_follow_the_pacing(emulator_factory) -> None:
    emu = emulator_factory(prefill_ms=20, token_ms=5, tokens=6)
    conn = HttpConnection(emu.host, emu.port)
    reply = conn.request("POST", "/api/generate", {"model": MODEL, "prompt": "pace", "stream": False}).json()
    conn.close()
    assert reply["prompt_eval_duration"] >= 20_000_000 * 0.9
    assert reply["eval_duration"] >= 6 * 5_000_000 * 0.9


def test_pull_streams_progress(conn: HttpConnection) -> None:
    lines = ndjson(conn.request("POST", "/api/pull", {"model": "tinyllama"}))
    assert lines[-1] == {"status": "success"}
    assert any({"digest", "total", "completed"} <= set(line) for line in lines)
    assert conn.request("POST", "/api/show", {"model": "tinyllama"}).status == 200


# --- official clients ----------------------------------------------------------------------------------


def test_ollama_client_generate(emulator: EmulatorThread, native: ollama.Client) -> None:
    client = native
    body = {"model": MODEL, "prompt": "Tell me about llamas"}
    streamed = "".join(part.response for part in client.generate(model=MODEL, prompt=body["prompt"], stream=True))
    whole = client.generate(model=MODEL, prompt=body["prompt"])
    assert streamed == whole.response == expected_text("generate", body, emulator.config)
    assert whole.done_reason == "stop" and whole.eval_count == emulator.config.tokens


def test_ollama_client_chat_with_think_and_tools(emulator: EmulatorThread, native: ollama.Client) -> None:
    client = native
    messages = [{"role": "user", "content": "Weather in Paris?"}]
    body = {"model": MODEL, "messages": messages, "think": True, "tools": [WEATHER_TOOL]}
    plan = plan_reply("chat", body, emulator.config)
    parts = list(client.chat(model=MODEL, messages=messages, think=True, tools=[WEATHER_TOOL], stream=True))
    assert "".join(p.message.thinking or "" for p in parts) == plan.thinking_text
    assert "".join(p.message.content or "" for p in parts) == plan.text
    calls = [c for p in parts if not p.done for c in (p.message.tool_calls or [])]
    assert [(c.function.name, dict(c.function.arguments)) for c in calls] == [
        ("get_weather", plan.tool_calls[0].arguments)
    ]
    assert parts[-1].done and parts[-1].eval_count == plan.eval_count
    whole = client.chat(model=MODEL, messages=messages, think=True, tools=[WEATHER_TOOL], stream=False)
    assert (whole.message.content, whole.message.thinking) == (plan.text, plan.thinking_text)
    assert whole.message.tool_calls[0].function.name == "get_weather"


def test_clients_see_404(native: ollama.Client, oai: openai.OpenAI) -> None:
    with pytest.raises(ollama.ResponseError) as error:
        native.generate(model="missing:7b", prompt="x")
    assert error.value.status_code == 404 and "not found" in error.value.error
    with pytest.raises(openai.NotFoundError):
        oai.chat.completions.create(model="missing:7b", messages=[{"role": "user", "content": "x"}])


def test_ollama_client_sees_mid_stream_error(native: ollama.Client) -> None:
    received = []
    with pytest.raises(ollama.ResponseError, match="emulated error"):
        for part in native.generate(model=MODEL, prompt="x", stream=True, options={"emulator_error_after": 4}):
            received.append(part.response)
    assert len(received) == 4


def test_openai_chat_stream_with_usage(emulator: EmulatorThread, oai: openai.OpenAI) -> None:
    client = oai
    messages = [{"role": "user", "content": "Stream me something"}]
    chunks = list(
        client.chat.completions.create(
            model=MODEL, messages=messages, stream=True, stream_options={"include_usage": True}
        )
    )
    plan = plan_reply("openai_chat", {"model": MODEL, "messages": messages}, emulator.config)
    content = [c for c in chunks if c.choices]
    assert "".join(c.choices[0].delta.content or "" for c in content) == plan.text
    assert all(c.choices[0].delta.role == "assistant" for c in content)  # in every chunk, as Ollama v0.24.0
    assert content[-1].choices[0].finish_reason == "stop" and not content[-1].choices[0].delta.content
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == len(plan.content)
    # Same messages, native chat: same text.
    assert plan.text == expected_text("chat", {"model": MODEL, "messages": messages}, emulator.config)


def test_openai_chat_non_stream_reasoning_tools_and_length(emulator: EmulatorThread, oai: openai.OpenAI) -> None:
    client = oai
    messages = [{"role": "user", "content": "tools please"}]
    reply = client.chat.completions.create(model=MODEL, messages=messages, tools=[WEATHER_TOOL], max_tokens=3)
    plan = plan_reply("openai_chat", {"model": MODEL, "messages": messages, "tools": [WEATHER_TOOL], "max_tokens": 3})
    assert reply.object == "chat.completion" and reply.choices[0].message.content == plan.text
    assert reply.choices[0].finish_reason == "tool_calls"
    call = reply.choices[0].message.tool_calls[0]
    assert json.loads(call.function.arguments) == plan.tool_calls[0].arguments
    assert reply.usage.completion_tokens == 3
    thinking = client.chat.completions.create(model=MODEL, messages=messages, reasoning_effort="low")
    assert (
        thinking.choices[0].message.model_extra["reasoning"]
        == plan_reply("openai_chat", {"model": MODEL, "messages": messages, "reasoning_effort": "low"}).thinking_text
    )


def test_openai_completions(emulator: EmulatorThread, oai: openai.OpenAI) -> None:
    client = oai
    body = {"model": MODEL, "prompt": "Once upon a time"}
    whole = client.completions.create(model=MODEL, prompt=body["prompt"])
    assert whole.object == "text_completion" and whole.choices[0].text == expected_text("openai_completion", body)
    streamed = list(
        client.completions.create(model=MODEL, prompt=body["prompt"], stream=True, extra_body={"emulator_tokens": 5})
    )
    assert "".join(c.choices[0].text for c in streamed) == expected_text(
        "openai_completion", {**body, "emulator_tokens": 5}
    )
    assert expected_text("openai_completion", body) == expected_text("generate", body)


def test_openai_legacy_finish(emulator_factory) -> None:
    emu = emulator_factory(openai_legacy_finish=True, tokens=4)
    with openai.OpenAI(base_url=emu.url + "/v1", api_key="x") as client:
        chunks = list(
            client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "x"}], stream=True)
        )
    assert len(chunks) == 4 and chunks[-1].choices[0].finish_reason == "stop" and chunks[-1].choices[0].delta.content


def test_ipv6(emulator_factory) -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6")
    try:
        emu = emulator_factory(host="::1")
    except OSError:
        pytest.skip("::1 not available")
    assert emu.url == f"http://[::1]:{emu.port}"
    with ollama.Client(host=emu.url) as client:
        reply = client.generate(model=MODEL, prompt="six")
    assert reply.response == expected_text("generate", {"model": MODEL, "prompt": "six"}, emu.config)


def test_deterministic_text_has_multibyte_tokens() -> None:
    texts = [expected_text("generate", {"model": MODEL, "prompt": f"p{i}"}) for i in range(20)]
    joined = "".join(texts)
    assert len(joined.encode()) > len(joined)  # multi-byte UTF-8 present
    assert texts[0] == expected_text("generate", {"model": MODEL, "prompt": "p0"})
    assert texts[0] != expected_text("generate", {"model": "qwen3:0.6b", "prompt": "p0"})


# --- the CLI -------------------------------------------------------------------------------------------


def _cli(*args: str) -> subprocess.Popen[str]:
    code = "from analyzer.cli.main import cli; cli()"
    return subprocess.Popen(
        [sys.executable, "-c", code, "emulate", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def test_cli_serves_and_stops_on_sigterm() -> None:
    proc = _cli("--port", "0", "--token-ms", "0", "--prefill-ms", "0")
    try:
        line = proc.stdout.readline()
        match = re.fullmatch(r"emulator listening on http://127\.0\.0\.1:(\d+)\n", line)
        assert match, line
        with ollama.Client(host=f"http://127.0.0.1:{match[1]}") as client:
            reply = client.generate(model=MODEL, prompt="cli")
        assert reply.response == expected_text("generate", {"model": MODEL, "prompt": "cli"})
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
        proc.stderr.close()


def test_cli_busy_port_is_one_line_error() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        proc = _cli("--port", str(busy.getsockname()[1]))
        _, err = proc.communicate(timeout=30)
    assert proc.returncode != 0
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_emulator_thread_reports_busy_port() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        with pytest.raises(OSError):
            EmulatorThread(EmulatorConfig(), port=busy.getsockname()[1]).start()


def test_sse_framing_one_event_per_chunk(emulator: EmulatorThread, conn: HttpConnection) -> None:
    body = {"model": MODEL, "messages": [{"role": "user", "content": "sse"}], "stream": True}
    body["stream_options"] = {"include_usage": True}
    response = conn.request("POST", "/v1/chat/completions", body)
    assert response.headers["content-type"] == "text/event-stream"
    # One event per chunk; the end (finish_reason, usage, [DONE]) in one chunk, as Ollama v0.24.0 writes it.
    *body_chunks, end = response.chunks
    assert all(c.startswith(b"data: ") and c.endswith(b"\n\n") and c.count(b"\n\n") == 1 for c in body_chunks)
    assert end.count(b"\n\n") == 3 and end.endswith(b"data: [DONE]\n\n")
    tail = [e.removeprefix(b"data: ") for e in end.split(b"\n\n")[:2]]
    events = [json.loads(c[6:]) for c in body_chunks] + [json.loads(e) for e in tail]
    assert events[-2]["choices"][0] == {
        "index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": "stop"
    }  # fmt: skip
    assert events[-1]["choices"] == [] and set(events[-1]["usage"]) == {
        "prompt_tokens",
        "completion_tokens",
        "total_tokens",
    }
    assert "".join(e["choices"][0]["delta"].get("content", "") for e in events[:-1]) == expected_text(
        "openai_chat", body, emulator.config
    )
    whole = conn.request("POST", "/v1/chat/completions", {**body, "stream": False}).json()
    assert whole["object"] == "chat.completion" and whole["usage"]["completion_tokens"] == emulator.config.tokens
