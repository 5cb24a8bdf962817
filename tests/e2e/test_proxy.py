"""End to end: the official clients and curl → a real ``mitmdump -s addons/ollama_log.py`` → the emulator.

Each test marks its requests with a unique word in the prompt (or model name) and finds its records with
``proxy.wait_for(marker)``. Expected reply text comes from ``analyzer.emulator.plan_reply``, the same
function the emulator answers with. No assertion depends on speed: timing checks compare the order of
two clock readings on the same machine, never a duration against a limit.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import socket
import subprocess
import threading
import time
import uuid
from datetime import datetime
from typing import TYPE_CHECKING, Any

import httpx
import ollama
import openai
import pytest

from analyzer.emulator import EmulatorThread, plan_reply
from analyzer.protocol.record import (
    FLAG_CLIENT_ABORTED,
    FLAG_ERROR_MID_STREAM,
    FLAG_NO_RESPONSE,
    FLAG_REDACTED,
    FLAG_SHUTDOWN,
    FLAG_UPSTREAM_FAILED,
    InteractionRecord,
)
from tests.support.defaults import CLIENT_TIMEOUT_S, MODEL
from tests.support.rawhttp import HttpConnection, raw_exchange, request_bytes

if TYPE_CHECKING:
    from tests.e2e.conftest import Mitmdump, MitmdumpFactory

pytestmark = pytest.mark.timeout(60)

# Slow enough that a stream is still open while the test acts on it (abort, SIGINT); bounded by tokens.
SLOW = {"emulator_token_ms": 25, "emulator_tokens": 400}


def marker() -> str:
    """A word no other test uses, to find this test's records in the shared log."""
    return "m" + uuid.uuid4().hex[:12]


def only(records: list[InteractionRecord]) -> InteractionRecord:
    assert len(records) == 1, [r.to_dict() for r in records]
    return records[0]


def ollama_client(proxy: Mitmdump) -> ollama.Client:
    return ollama.Client(host=proxy.url, timeout=CLIENT_TIMEOUT_S)


def openai_client(proxy: Mitmdump) -> openai.OpenAI:
    return openai.OpenAI(base_url=proxy.url + "/v1", api_key="ollama", max_retries=0, timeout=CLIENT_TIMEOUT_S)


def ndjson_text(body: bytes, field: str = "response") -> str:
    """The concatenated ``field`` of every NDJSON line (generate's ``response``)."""
    return "".join(json.loads(line).get(field, "") for line in body.splitlines() if line.strip())


def epoch(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


# Fields the emulator fills from the clock; everything else in a reply is a pure function of the request.
CLOCK_FIELDS = re.compile(
    rb'"created_at":"[^"]*"|"(total|load|prompt_eval|eval)_duration":\d+|"created":\d+|"(chatcmpl|cmpl)-\d+"'
)


def without_clock(body: bytes) -> bytes:
    return CLOCK_FIELDS.sub(b"<clock>", body)


# -- native API through the official ollama client ----------------------------------------------------------


def test_generate_stream_and_non_stream(proxy: Mitmdump, emulator: EmulatorThread) -> None:
    mark = marker()
    client = ollama_client(proxy)
    streamed = "".join(part.response for part in client.generate(model=MODEL, prompt=f"stream {mark}", stream=True))
    whole = client.generate(model=MODEL, prompt=f"whole {mark}", stream=False)

    records = {r.prompt: r for r in proxy.wait_for(mark, count=2)}
    stream_record, whole_record = records[f"stream {mark}"], records[f"whole {mark}"]
    assert streamed == plan_reply("generate", {"model": MODEL, "prompt": f"stream {mark}"}, emulator.config).text
    assert stream_record.response_text == streamed
    assert stream_record.stream is True and stream_record.complete and stream_record.flags == []
    assert stream_record.chunks == emulator.config.tokens + 1  # one object per token + the done object
    assert stream_record.eval_count == emulator.config.tokens and stream_record.done_reason == "stop"
    assert stream_record.ttft_ms is not None and stream_record.ttfb_ms is not None
    assert stream_record.ttfb_ms <= stream_record.ttft_ms <= stream_record.total_ms
    assert (stream_record.api, stream_record.kind, stream_record.status) == ("ollama", "generate", 200)
    assert stream_record.client.startswith("127.0.0.1:") and stream_record.server == f"127.0.0.1:{emulator.port}"

    assert whole_record.response_text == whole.response and whole_record.stream is False
    assert whole_record.complete and whole_record.eval_count == whole.eval_count
    assert f"ollama POST /api/generate {MODEL} 200 ttft" in proxy.console()


def test_chat_with_thinking_and_tools(proxy: Mitmdump, emulator: EmulatorThread) -> None:
    mark = marker()
    messages = [{"role": "user", "content": f"weather in Paris? {mark}"}]
    tool = {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Current weather",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
        },
    }
    content, thinking, calls = "", "", []
    for part in ollama_client(proxy).chat(model=MODEL, messages=messages, tools=[tool], think=True, stream=True):
        content += part.message.content or ""
        thinking += part.message.thinking or ""
        calls += [c.model_dump() for c in part.message.tool_calls or []]

    plan = plan_reply("chat", {"model": MODEL, "messages": messages, "think": True, "tools": [tool]}, emulator.config)
    assert (content, thinking) == (plan.text, plan.thinking_text) and thinking
    record = only(proxy.wait_for(mark))
    assert (record.kind, record.api, record.complete) == ("chat", "ollama", True)
    assert record.response_text == content and record.thinking_text == thinking
    assert (
        [c["function"]["name"] for c in record.tool_calls] == ["get_weather"] == [c["function"]["name"] for c in calls]
    )
    assert record.tool_calls[0]["function"]["arguments"] == calls[0]["function"]["arguments"]
    assert record.messages and record.messages[0]["content"] == messages[0]["content"]


# -- OpenAI-compatible API through the official openai client -----------------------------------------------


def test_openai_chat_stream_with_usage(proxy: Mitmdump, emulator: EmulatorThread) -> None:
    mark = marker()
    messages = [{"role": "user", "content": f"hello {mark}"}]
    chunks = list(
        openai_client(proxy).chat.completions.create(
            model=MODEL, messages=messages, stream=True, stream_options={"include_usage": True}
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    usage = chunks[-1].usage
    assert usage is not None and chunks[-1].choices == []

    assert text == plan_reply("openai_chat", {"model": MODEL, "messages": messages}, emulator.config).text
    record = only(proxy.wait_for(mark))
    assert (record.api, record.kind, record.stream, record.complete) == ("openai", "chat", True, True)
    assert record.response_text == text and record.done_reason == "stop"
    assert (record.prompt_eval_count, record.eval_count) == (usage.prompt_tokens, usage.completion_tokens)
    assert record.ttft_ms is not None and record.flags == []


def test_openai_completions(proxy: Mitmdump, emulator: EmulatorThread) -> None:
    mark = marker()
    client = openai_client(proxy)
    whole = client.completions.create(model=MODEL, prompt=f"whole {mark}", max_tokens=7)
    streamed = "".join(
        c.choices[0].text for c in client.completions.create(model=MODEL, prompt=f"s {mark}", stream=True)
    )

    records = {r.prompt: r for r in proxy.wait_for(mark, count=2)}
    assert records[f"whole {mark}"].response_text == whole.choices[0].text
    assert records[f"whole {mark}"].done_reason == "length" and records[f"whole {mark}"].eval_count == 7
    assert records[f"s {mark}"].response_text == streamed
    assert streamed == plan_reply("openai_completion", {"model": MODEL, "prompt": f"s {mark}"}, emulator.config).text
    assert all(r.path == "/v1/completions" and r.complete for r in records.values())


# -- errors --------------------------------------------------------------------------------------------------


def test_unknown_model_404_through_both_clients(proxy: Mitmdump) -> None:
    missing = f"nosuch-{marker()}:1b"
    with pytest.raises(ollama.ResponseError) as native:
        ollama_client(proxy).generate(model=missing, prompt="hi")
    with pytest.raises(openai.NotFoundError) as compat:
        openai_client(proxy).chat.completions.create(model=missing, messages=[{"role": "user", "content": "hi"}])
    assert native.value.status_code == 404 and compat.value.status_code == 404

    records = {r.api: r for r in proxy.wait_for(missing, count=2)}
    assert set(records) == {"ollama", "openai"}
    for record in records.values():
        assert record.status == 404 and record.model == missing
        assert record.error == f"model '{missing}' not found"
        assert record.response_text == "" and record.complete  # a whole error body is a complete response


def test_error_mid_stream(proxy: Mitmdump, emulator: EmulatorThread) -> None:
    mark = marker()
    body = {"model": MODEL, "prompt": mark, "options": {"emulator_error_after": 3}}
    received = ""
    with pytest.raises(ollama.ResponseError, match="emulated error after 3 tokens"):
        for part in ollama_client(proxy).generate(model=MODEL, prompt=mark, options=body["options"], stream=True):
            received += part.response

    record = only(proxy.wait_for(mark))
    assert record.status == 200 and record.error == "emulated error after 3 tokens"
    assert FLAG_ERROR_MID_STREAM in record.flags and not record.complete
    assert record.response_text == received == "".join(plan_reply("generate", body, emulator.config).content[:3])


def test_client_abort_keeps_partial_text_and_proxy_keeps_serving(proxy: Mitmdump, emulator: EmulatorThread) -> None:
    mark = marker()
    body = {"model": MODEL, "prompt": mark, "options": SLOW}
    with HttpConnection(*proxy.address, timeout_s=CLIENT_TIMEOUT_S) as conn:
        conn.send(request_bytes("POST", "/api/generate", body, host="proxy", close=True))
        assert conn.read_head().status == 200
        received = ""
        for piece, _ in zip(conn.chunks(), range(3), strict=False):
            received += ndjson_text(piece)
    # the socket is closed here, mid-stream

    record = only(proxy.wait_for(mark))
    assert FLAG_CLIENT_ABORTED in record.flags and not record.complete
    assert record.response_text.startswith(received) and len(received) > 0
    assert plan_reply("generate", body, emulator.config).text.startswith(record.response_text)
    assert len(record.response_text) < len(plan_reply("generate", body, emulator.config).text)

    after = marker()
    assert ollama_client(proxy).generate(model=MODEL, prompt=after).done
    assert only(proxy.wait_for(after)).complete


def test_client_abort_before_response(proxy: Mitmdump) -> None:
    mark = marker()
    body = {"model": MODEL, "prompt": mark, "options": {"emulator_prefill_ms": 3000}}
    with HttpConnection(*proxy.address, timeout_s=CLIENT_TIMEOUT_S) as conn:
        conn.send(request_bytes("POST", "/api/generate", body, host="proxy", close=True))
        time.sleep(0.3)  # let the proxy forward the request; the test holds whatever the timing
    record = only(proxy.wait_for(mark))
    assert set(record.flags) == {FLAG_NO_RESPONSE, FLAG_CLIENT_ABORTED}
    assert record.status is None and record.response_text == "" and not record.complete
    assert record.prompt == mark and record.request_bytes == len(json.dumps(body))


def test_upstream_dies_mid_stream(proxy: Mitmdump, emulator: EmulatorThread) -> None:
    mark = marker()
    body = {"model": MODEL, "prompt": mark, "options": {"emulator_close_after": 5}}
    received = ""
    with pytest.raises((httpx.HTTPError, ollama.ResponseError)):
        for part in ollama_client(proxy).generate(model=MODEL, prompt=mark, options=body["options"], stream=True):
            received += part.response

    record = only(proxy.wait_for(mark))
    assert FLAG_UPSTREAM_FAILED in record.flags and not record.complete and record.error
    assert record.response_text == "".join(plan_reply("generate", body, emulator.config).content[:5])
    assert record.response_text.startswith(received)


# -- concurrency and connections ------------------------------------------------------------------------------


def test_sixteen_concurrent_streams(proxy: Mitmdump, emulator: EmulatorThread) -> None:
    mark = marker()
    results: dict[int, str] = {}
    failures: list[BaseException] = []

    def run(i: int) -> None:
        try:
            parts = ollama_client(proxy).generate(model=MODEL, prompt=f"{mark} #{i}", stream=True)
            results[i] = "".join(p.response for p in parts)
        except BaseException as exc:  # reported by the main thread
            failures.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(CLIENT_TIMEOUT_S)
    assert not failures and len(results) == 16

    records = {r.prompt: r for r in proxy.wait_for(mark, count=16)}
    assert len(records) == 16
    for i, text in results.items():
        expected = plan_reply("generate", {"model": MODEL, "prompt": f"{mark} #{i}"}, emulator.config).text
        record = records[f"{mark} #{i}"]
        assert text == expected == record.response_text
        assert record.complete and record.flags == []
    assert len(set(results.values())) == 16  # distinct prompts, distinct texts: no mix-ups to hide behind


def test_keep_alive_connection_gives_one_record_per_request(proxy: Mitmdump) -> None:
    mark = marker()
    with httpx.Client(base_url=proxy.url, timeout=CLIENT_TIMEOUT_S) as client:
        for i in range(4):
            reply = client.post("/api/generate", json={"model": MODEL, "prompt": f"{mark} {i}", "stream": i % 2 == 0})
            assert reply.status_code == 200
    with HttpConnection(*proxy.address, timeout_s=CLIENT_TIMEOUT_S) as conn:
        for i in range(4, 7):
            conn.send(request_bytes("POST", "/api/generate", {"model": MODEL, "prompt": f"{mark} {i}"}, host="p"))
            assert conn.read_response().status == 200

    records = proxy.wait_for(mark, count=7)
    assert sorted(r.prompt or "" for r in records) == [f"{mark} {i}" for i in range(7)]
    assert all(r.complete and r.response_text for r in records)
    by_prompt = {r.prompt: r for r in records}
    # one TCP connection each: the same client port for all requests of a connection
    assert len({by_prompt[f"{mark} {i}"].client for i in range(4)}) == 1
    assert len({by_prompt[f"{mark} {i}"].client for i in range(4, 7)}) == 1


@pytest.mark.parametrize(("tokens", "upstream_chunked"), [(5, False), (400, True)])
def test_non_stream_bodies_around_2048_bytes(
    proxy: Mitmdump, emulator: EmulatorThread, tokens: int, upstream_chunked: bool
) -> None:
    mark = marker()
    body = {"model": MODEL, "prompt": mark, "stream": False, "options": {"emulator_tokens": tokens}}
    direct = raw_exchange((emulator.host, emulator.port), "POST", "/api/generate", body)
    assert direct.chunked is upstream_chunked and (len(direct.body) > 2048) is upstream_chunked

    through = raw_exchange(proxy.address, "POST", "/api/generate", body)
    assert without_clock(through.body) == without_clock(direct.body)
    assert json.loads(through.body)["response"] == plan_reply("generate", body, emulator.config).text

    records = proxy.wait_for(mark)  # only the request through the proxy is recorded
    assert all(r.response_text == json.loads(through.body)["response"] for r in records)
    assert all(r.complete and r.stream is False and r.eval_count == tokens for r in records)


# -- bytes and timing -----------------------------------------------------------------------------------------


def curl(url: str, body: dict[str, Any] | None = None) -> bytes:
    executable = shutil.which("curl")
    if executable is None:
        pytest.skip("curl not installed")
    argv = [executable, "-sS", "--no-buffer", "--max-time", "30", url]
    if body is not None:
        argv += ["-H", "Content-Type: application/json", "--data-binary", json.dumps(body)]
    return subprocess.run(argv, capture_output=True, check=True, timeout=60).stdout


def test_body_bytes_identical_through_proxy(proxy: Mitmdump, emulator: EmulatorThread) -> None:
    mark = marker()
    # Fully deterministic replies: an NDJSON progress stream (chunked) and a single JSON object.
    pull = {"model": f"{mark}:latest"}
    assert curl(proxy.url + "/api/pull", pull) == curl(emulator.url + "/api/pull", pull)
    via_socket = raw_exchange(proxy.address, "POST", "/api/pull", pull)
    assert (
        via_socket.chunked
        and via_socket.body == raw_exchange((emulator.host, emulator.port), "POST", "/api/pull", pull).body
    )
    assert curl(proxy.url + "/api/tags") == curl(emulator.url + "/api/tags")

    # A token stream: identical except for the fields the emulator fills from its clock.
    body = {"model": MODEL, "prompt": f"bytes {mark}", "options": {"emulator_tokens": 60}}
    through, direct = curl(proxy.url + "/api/generate", body), curl(emulator.url + "/api/generate", body)
    assert without_clock(through) == without_clock(direct) and through.count(b"\n") == 61
    sse_body = {"model": MODEL, "messages": [{"role": "user", "content": f"sse {mark}"}], "stream": True}
    sse_through = curl(proxy.url + "/v1/chat/completions", sse_body)
    assert without_clock(sse_through) == without_clock(curl(emulator.url + "/v1/chat/completions", sse_body))

    recorded = proxy.wait_for(mark, count=4)  # two pulls, one generate, one chat (tags has no marker)
    assert [r.path for r in recorded].count("/api/pull") == 2
    assert all(r.complete and r.flags == [] for r in recorded)
    records = {r.path: r for r in recorded}
    client_text = ndjson_text(through)
    assert records["/api/generate"].response_text.encode() == client_text.encode()
    assert client_text == plan_reply("generate", body, emulator.config).text
    sse_text = "".join(
        json.loads(line[6:])["choices"][0]["delta"].get("content", "")
        for line in sse_through.decode().split("\n\n")
        if line.startswith("data: {")
    )
    assert records["/v1/chat/completions"].response_text.encode() == sse_text.encode()
    assert records["/v1/chat/completions"].response_bytes == len(sse_through)
    assert records["/api/generate"].response_bytes == len(through)


def test_record_ttft_not_later_than_client_ttft(proxy: Mitmdump) -> None:
    mark = marker()
    body = {"model": MODEL, "prompt": mark, "options": {"emulator_prefill_ms": 30}}
    with HttpConnection(*proxy.address, timeout_s=CLIENT_TIMEOUT_S) as conn:
        sent_at = time.time()
        conn.send(request_bytes("POST", "/api/generate", body, host="proxy", close=True))
        conn.read_head()
        first_token_at = None
        for piece in conn.chunks():
            if first_token_at is None and ndjson_text(piece):
                first_token_at = time.time()
    assert first_token_at is not None

    record = only(proxy.wait_for(mark))
    assert record.ttft_ms is not None
    started = epoch(record.started_at)
    # the start may be off by its documented bound (a kernel stamp: 0.5 ms; TCP_INFO: one kernel tick)
    slack_s = max(0.001, (record.start_bound_ms or 0.0) / 1000)
    assert started >= sent_at - slack_s
    assert started + record.ttft_ms / 1000 <= first_token_at + slack_s


# -- what is not recorded, IPv6, shutdown -----------------------------------------------------------------------


def test_non_ollama_path_creates_no_record(proxy: Mitmdump) -> None:
    reply = httpx.get(proxy.url + "/favicon.ico", timeout=CLIENT_TIMEOUT_S)
    assert reply.status_code == 404 and reply.text == "404 page not found"
    assert reply.headers["content-type"].startswith("text/plain")
    mark = marker()  # a later recorded request: once it is in the log, the favicon one would be too
    ollama_client(proxy).generate(model=MODEL, prompt=mark)
    proxy.wait_for(mark)
    assert not [r for r in proxy.records() if "favicon" in r.path]


def ipv6_loopback() -> bool:
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as sock:
            sock.bind(("::1", 0))
        return True
    except OSError:
        return False


@pytest.mark.skipif(not ipv6_loopback(), reason="no IPv6 loopback (::1) on this machine")
def test_ipv6(emulator_factory: Any, mitmdump_factory: MitmdumpFactory) -> None:
    upstream = emulator_factory(host="::1")
    proxy = mitmdump_factory(upstream, host="::1")
    mark = marker()
    reply = ollama_client(proxy).generate(model=MODEL, prompt=mark)
    record = only(proxy.wait_for(mark))
    assert record.response_text == reply.response and record.complete
    assert record.client.startswith("[::1]:") and record.server == f"[::1]:{upstream.port}"


def test_sigint_records_completed_and_open_streams(emulator: EmulatorThread, mitmdump_factory: MitmdumpFactory) -> None:
    proxy = mitmdump_factory(emulator)
    mark = marker()
    client = ollama_client(proxy)
    for i in range(2):
        assert client.generate(model=MODEL, prompt=f"{mark} done {i}").done
    proxy.wait_for(mark, count=2)

    body = {"model": MODEL, "prompt": f"{mark} open", "options": SLOW}
    with HttpConnection(*proxy.address, timeout_s=CLIENT_TIMEOUT_S) as conn:
        conn.send(request_bytes("POST", "/api/generate", body, host="proxy", close=True))
        assert conn.read_head().status == 200
        received = "".join(ndjson_text(piece) for piece, _ in zip(conn.chunks(), range(3), strict=False))
        proxy.stop()  # SIGINT while the stream is open
        assert proxy.process is not None and proxy.process.returncode is not None

    records = {r.prompt: r for r in proxy.records()}
    assert set(records) == {f"{mark} done 0", f"{mark} done 1", f"{mark} open"}, proxy.console()[-3000:]
    assert records[f"{mark} done 0"].complete and records[f"{mark} done 1"].complete
    open_record = records[f"{mark} open"]
    assert FLAG_SHUTDOWN in open_record.flags and not open_record.complete
    assert open_record.response_text.startswith(received) and received


IMAGE_URL = "data:image/png;base64,iVBORw0KGgo="


def openai_image_chat(proxy: Mitmdump, mark: str) -> str:
    """An OpenAI chat whose user message carries an inline image (an ``image_url`` part); the reply text."""
    content: Any = [{"type": "text", "text": mark}, {"type": "image_url", "image_url": {"url": IMAGE_URL}}]
    reply = openai_client(proxy).chat.completions.create(model=MODEL, messages=[{"role": "user", "content": content}])
    return reply.choices[0].message.content or ""


def test_openai_image_url_is_replaced_by_default_and_the_record_is_not_flagged(proxy: Mitmdump) -> None:
    mark = marker()
    text = openai_image_chat(proxy, mark)
    record = only(proxy.wait_for(mark))
    placeholder = f"<image {len(IMAGE_URL)} chars sha256:{hashlib.sha256(IMAGE_URL.encode()).hexdigest()}>"
    assert record.messages == [
        {
            "role": "user",
            "content": [{"type": "text", "text": mark}, {"type": "image_url", "image_url": {"url": placeholder}}],
        }
    ]
    assert (record.prompt, record.response_text, record.flags) == (mark, text, [])
    assert IMAGE_URL not in record.to_json()


def test_hash_redaction_through_the_addon_sets_the_redacted_flag(
    emulator: EmulatorThread, mitmdump_factory: MitmdumpFactory
) -> None:
    proxy = mitmdump_factory(emulator, options=["ollama_redact=hash"])
    mark = marker()
    text = openai_image_chat(proxy, mark)
    (record,) = [r for r in proxy.wait_for("redacted") if r.path == "/v1/chat/completions"]
    assert record.flags == [FLAG_REDACTED]
    assert (record.prompt, record.response_text) == (sha256_of(mark), sha256_of(text))
    assert mark not in record.to_json() and IMAGE_URL not in record.to_json()


def sha256_of(text: str) -> str:
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()
