"""Today's APIs against the real Ollama v0.24.0: the official ``anthropic`` and ``openai`` clients through a real
mitmdump with the addon. The 135M test model neither thinks nor calls tools, so this tier checks what the real
server's middlewares put on the wire — event shapes, the real usage, load/unload, the 404 error shapes — and that
the record carries exactly the text and counts the client saw; thinking and tools are covered against the
emulator (tests/e2e/test_proxy_today_apis.py).
"""

from __future__ import annotations

import uuid

import anthropic
import httpx
import pytest

from tests.real_ollama.conftest import CLIENT_TIMEOUT_S, openai_client

pytestmark = pytest.mark.timeout(600)


def test_anthropic_messages_stream(real_ollama_server, real_proxy):
    server = real_ollama_server(num_parallel=1)
    proxy = real_proxy(server)
    word = "a" + uuid.uuid4().hex[:10]
    client = anthropic.Anthropic(base_url=proxy.url, api_key="ollama", max_retries=0, timeout=CLIENT_TIMEOUT_S)
    with client.messages.stream(
        model=server.model, max_tokens=8, temperature=0, messages=[{"role": "user", "content": f"Say {word}"}]
    ) as stream:
        text = "".join(stream.text_stream)
        message = stream.get_final_message()
    record = proxy.wait_for(word)[0]
    assert (record.api, record.kind, record.status, record.complete) == ("anthropic", "messages", 200, True)
    assert record.response_text == text and record.done_reason == message.stop_reason
    # the record keeps message_delta's real counts (the client's final usage), not message_start's estimate
    assert (record.prompt_eval_count, record.eval_count) == (message.usage.input_tokens, message.usage.output_tokens)
    assert (record.opt_num_predict, record.opt_temperature) == (8, 0.0)
    assert record.ttft_content_ms == record.ttft_ms and record.ttft_thinking_ms is None


def test_responses_stream_and_whole(real_ollama_server, real_proxy):
    server = real_ollama_server(num_parallel=1)
    proxy = real_proxy(server)
    client = openai_client(proxy.url)
    word = "r" + uuid.uuid4().hex[:10]
    with client.responses.stream(model=server.model, input=f"Say {word}", max_output_tokens=8) as stream:
        response = stream.get_final_response()
    record = proxy.wait_for(word)[0]
    assert (record.api, record.kind, record.complete, record.done_reason) == ("openai", "responses", True, "completed")
    assert record.response_text == response.output_text
    assert response.usage is not None
    assert (record.prompt_eval_count, record.eval_count) == (response.usage.input_tokens, response.usage.output_tokens)
    assert record.prompt_eval_cached_count is None  # Ollama's cached_tokens: 0 is a constant, not a count
    word = "q" + uuid.uuid4().hex[:10]
    whole = client.responses.create(model=server.model, input=f"Say {word}", max_output_tokens=8)
    record = proxy.wait_for(word)[0]
    assert (record.stream, record.response_text, record.eval_count) == (
        False,
        whole.output_text,
        whole.usage.output_tokens,
    )


def test_load_unload_head_and_error_shapes(real_ollama_server, real_proxy):
    server = real_ollama_server(num_parallel=1)
    proxy = real_proxy(server)
    model = server.model
    with httpx.Client(base_url=proxy.url, timeout=CLIENT_TIMEOUT_S) as http:
        assert http.post("/api/generate", json={"model": model}).json()["done_reason"] == "load"
        assert http.post("/api/chat", json={"model": model, "keep_alive": 0}).json()["done_reason"] == "unload"
        assert http.head("/api/version").status_code == 200
        missing = "nosuch" + uuid.uuid4().hex[:6]
        reply = http.post(
            "/v1/messages", json={"model": missing, "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]}
        )
        assert reply.status_code == 404 and reply.json()["type"] == "error"
        status = http.get("/api/status")
    records = proxy.wait_for(model, count=2) + proxy.wait_for(missing)
    kinds = sorted(r.kind for r in records)
    assert kinds == ["load", "messages", "unload"]
    error = next(r for r in records if r.kind == "messages")
    assert (error.status, error.error) == (404, reply.json()["error"]["message"])
    head = proxy.wait_for('"method":"HEAD"')[0]
    assert (head.kind, head.complete) == ("version", True)
    status_record = proxy.wait_for('"path":"/api/status"')[0]
    assert (status_record.kind, status_record.status) == ("status", status.status_code)
