"""The emulator's share of today's Ollama: /v1/messages and /v1/responses bodies and errors, the offline endpoints,
the 503 of a full queue (OLLAMA_MAX_QUEUE), truncate/shift — over real HTTP on loopback."""

from __future__ import annotations

import concurrent.futures
import json
from typing import Any

import httpx
import pytest

from analyzer.emulator import EmulatorConfig, EmulatorThread, plan_reply
from tests.support.defaults import FAST, MODEL

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(scope="module")
def url() -> Any:
    with EmulatorThread(EmulatorConfig(**FAST)) as emulator:
        yield emulator.url


def post(url: str, path: str, body: Any, **kwargs: Any) -> httpx.Response:
    return httpx.post(url + path, json=body, timeout=30, **kwargs)


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        ({"max_tokens": 5, "messages": [{"role": "user", "content": "x"}]}, 400, "model is required"),
        (
            {"model": MODEL, "messages": [{"role": "user", "content": "x"}]},
            400,
            "max_tokens is required and must be positive",
        ),
        ({"model": MODEL, "max_tokens": 5, "messages": []}, 400, "messages is required"),
        (
            {"model": "nope:1", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]},
            404,
            "model 'nope:1' not found",
        ),
    ],
)
def test_anthropic_errors_have_anthropics_shape(url: str, body: dict[str, Any], status: int, message: str) -> None:
    reply = post(url, "/v1/messages", body)
    data = reply.json()
    assert (reply.status_code, data["type"], data["error"]["message"]) == (status, "error", message)
    assert data["error"]["type"] == {400: "invalid_request_error", 404: "not_found_error"}[status]
    assert data["request_id"].startswith("req_")


def test_anthropic_whole_message_matches_the_plan(url: str) -> None:
    body = {"model": MODEL, "max_tokens": 100, "messages": [{"role": "user", "content": "hello"}]}
    data = post(url, "/v1/messages", body).json()
    plan = plan_reply(
        "openai_chat", {"model": MODEL, "messages": [{"role": "user", "content": "hello"}], "max_tokens": 100}
    )
    assert data["content"] == [{"type": "text", "text": plan.text}]
    assert (data["stop_reason"], data["usage"]) == (
        "end_turn",
        {"input_tokens": plan.prompt_tokens, "output_tokens": len(plan.content)},
    )
    assert data["id"].startswith("msg_") and data["type"] == "message"


def test_anthropic_stream_event_order(url: str) -> None:
    body = {
        "model": MODEL,
        "max_tokens": 3,
        "stream": True,
        "thinking": {"type": "enabled"},
        "messages": [{"role": "user", "content": "hi"}],
    }
    with httpx.stream("POST", url + "/v1/messages", json=body, timeout=30) as reply:
        raw = reply.read().decode()
    events = [line.removeprefix("event: ") for line in raw.splitlines() if line.startswith("event: ")]
    think = 8  # EmulatorConfig.think_tokens; max_tokens cuts the answer to 3
    expected = ["message_start", "content_block_start", *["content_block_delta"] * think, "content_block_stop"]
    expected += [
        "content_block_start",
        *["content_block_delta"] * 3,
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    assert events == expected
    delta = json.loads(raw.split("event: message_delta\ndata: ")[1].split("\n")[0])
    assert delta["delta"] == {"stop_reason": "max_tokens"} and delta["usage"]["output_tokens"] == think + 3


def test_responses_whole_body_and_error(url: str) -> None:
    data = post(url, "/v1/responses", {"model": MODEL, "input": "hello"}).json()
    assert (data["object"], data["status"], data["output"][0]["type"]) == ("response", "completed", "message")
    assert data["usage"]["input_tokens_details"] == {"cached_tokens": 0}
    missing = post(url, "/v1/responses", {"model": "nope:1", "input": "x"})
    assert missing.status_code == 404 and missing.json()["error"]["message"] == "model 'nope:1' not found"


@pytest.mark.parametrize(
    ("method", "path", "status", "body"),
    [
        ("GET", "/api/status", 200, {"cloud": {"disabled": True, "source": "env"}}),
        ("POST", "/api/experimental/web_search", 403, {"error": "ollama cloud is disabled: web search is unavailable"}),
        ("POST", "/api/experimental/web_fetch", 403, {"error": "ollama cloud is disabled: web fetch is unavailable"}),
        ("GET", "/api/experimental/model-recommendations", 200, {"recommendations": []}),
        ("POST", "/api/me", 503, {"error": "account unavailable"}),
        ("POST", "/api/signout", 500, {"error": "there was an error signing out"}),
        ("DELETE", "/api/user/keys/abc", 500, {"error": "there was an error signing out"}),
    ],
)
def test_offline_endpoints(url: str, method: str, path: str, status: int, body: dict[str, Any]) -> None:
    reply = httpx.request(method, url + path, json={"query": "x"}, timeout=30)
    assert (reply.status_code, reply.json()) == (status, body)


def test_truncate_false_refuses_a_long_prompt_and_shift_false_stops_at_the_context(url: str) -> None:
    prompt = " ".join(["word"] * 40)
    options = {"num_ctx": 16}
    refused = post(
        url, "/api/generate", {"model": MODEL, "prompt": prompt, "truncate": False, "options": options, "stream": False}
    )
    assert (refused.status_code, refused.json()) == (400, {"error": "the input length exceeds the context length"})
    short = {"model": MODEL, "prompt": "a b c", "shift": False, "options": {"num_ctx": 10}, "stream": False}
    data = post(url, "/api/generate", short).json()
    assert (data["done_reason"], data["eval_count"], data["prompt_eval_count"]) == ("length", 6, 4)


def test_a_full_queue_answers_503_server_busy() -> None:
    config = EmulatorConfig(**{**FAST, "load_ms": 400.0, "max_queue": 1})
    with EmulatorThread(config) as emulator:
        body = {"model": MODEL, "prompt": "x", "stream": False}
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            replies = list(pool.map(lambda _: post(emulator.url, "/api/generate", body), range(4)))
    statuses = sorted(r.status_code for r in replies)
    assert statuses == [200, 200, 503, 503]
    busy = next(r for r in replies if r.status_code == 503)
    assert busy.json() == {"error": "server busy, please try again.  maximum pending requests exceeded"}
