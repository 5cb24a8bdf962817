"""Smoke: a streamed generate through the proxy is recorded as the real server sent it."""

from __future__ import annotations

import uuid

import pytest

from tests.real_ollama.conftest import SHORT, ollama_client

pytestmark = pytest.mark.timeout(300)


def test_streamed_generate_record_equals_what_the_client_got(real_ollama_server, real_proxy):
    server = real_ollama_server(num_parallel=1)
    proxy = real_proxy(server)
    word = "w" + uuid.uuid4().hex[:10]
    chunks = list(
        ollama_client(proxy.url).generate(model=server.model, prompt=f"Say {word}", options=SHORT, stream=True)
    )
    final = chunks[-1]
    record = proxy.wait_for(word)[0]
    assert record.status == 200 and record.complete and record.done_reason == final.done_reason
    assert record.response_text == "".join(c.response for c in chunks)
    assert record.eval_count == final.eval_count and record.prompt_eval_count == final.prompt_eval_count
    assert record.total_duration_ms == round(final.total_duration / 1e6, 3)
    assert record.chunks == len(chunks)
