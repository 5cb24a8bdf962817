"""Item 1 for Ollama's newer APIs: ``/v1/messages`` (official ``anthropic`` client) and ``/v1/responses``
(official ``openai`` client), through mitmdump to real Ollama v0.24.0.

Each test skips, saying so, while the recorder does not know the endpoint yet
(``analyzer.protocol.endpoints.classify`` returns None); they run once it does.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from analyzer.protocol.endpoints import classify
from tests.real_ollama.conftest import CLIENT_TIMEOUT_S, openai_client

pytestmark = [pytest.mark.real_ollama, pytest.mark.timeout(300)]

MAX_TOKENS = 8


def needs_endpoint(path: str) -> None:
    if classify(path) is None:
        pytest.skip(f"the recorder does not classify {path} yet (analyzer.protocol.endpoints)")


def anthropic_client(url: str) -> Any:
    import anthropic

    return anthropic.Anthropic(base_url=url, api_key="ollama", max_retries=0, timeout=CLIENT_TIMEOUT_S)


@pytest.mark.parametrize("stream", [True, False], ids=["stream", "single"])
def test_anthropic_messages_record_equals_what_the_client_received(real_ollama_server, real_proxy, stream) -> None:
    needs_endpoint("/v1/messages")
    server = real_ollama_server()
    proxy = real_proxy(server)
    word = "m" + uuid.uuid4().hex[:8]
    messages = [{"role": "user", "content": f"Say {word}"}]
    client = anthropic_client(proxy.url)
    if stream:
        text, usage = "", {}
        for event in client.messages.create(model=server.model, max_tokens=MAX_TOKENS, messages=messages, stream=True):
            if event.type == "content_block_delta" and event.delta.type == "text_delta":
                text += event.delta.text
            elif event.type == "message_delta":
                usage = {"input": event.usage.input_tokens, "output": event.usage.output_tokens}
    else:
        reply = client.messages.create(model=server.model, max_tokens=MAX_TOKENS, messages=messages)
        text = "".join(block.text for block in reply.content if block.type == "text")
        usage = {"input": reply.usage.input_tokens, "output": reply.usage.output_tokens}
    record = proxy.wait_for(word)[0]
    assert text and record.response_text == text
    assert record.path == "/v1/messages" and record.status == 200 and record.complete and record.flags == []
    assert record.stream is stream
    # message_delta's (and a whole reply's) usage are Ollama's real counters, not message_start's estimate.
    assert (record.prompt_eval_count, record.eval_count) == (usage["input"], usage["output"])
    assert (record.ttft_ms is not None) and (record.ttft_ms <= record.total_ms)


@pytest.mark.parametrize("stream", [True, False], ids=["stream", "single"])
def test_openai_responses_record_equals_what_the_client_received(real_ollama_server, real_proxy, stream) -> None:
    needs_endpoint("/v1/responses")
    server = real_ollama_server()
    proxy = real_proxy(server)
    word = "r" + uuid.uuid4().hex[:8]
    client = openai_client(proxy.url)
    if stream:
        text, usage = "", None
        events = client.responses.create(
            model=server.model, input=f"Say {word}", max_output_tokens=MAX_TOKENS, stream=True
        )
        for event in events:
            if event.type == "response.output_text.delta":
                text += event.delta
            elif event.type == "response.completed":
                usage = event.response.usage
    else:
        reply = client.responses.create(model=server.model, input=f"Say {word}", max_output_tokens=MAX_TOKENS)
        text, usage = reply.output_text, reply.usage
    record = proxy.wait_for(word)[0]
    assert text and usage is not None and record.response_text == text
    assert record.path == "/v1/responses" and record.status == 200 and record.complete and record.flags == []
    assert record.stream is stream
    assert (record.prompt_eval_count, record.eval_count) == (usage.input_tokens, usage.output_tokens)
