"""Today's APIs end to end: the official ``anthropic`` and ``openai`` clients → a real ``mitmdump`` with the addon →
the emulator, captured on loopback by tcpdump (large buffer, ``--immediate-mode``) and read back by both pcap
engines. The records must carry the text, thinking, tool calls and token counts the client saw; their first-token
times are checked by order against the client's own clock readings (the proxy sees each token before the client
does), never against a duration limit.
"""

from __future__ import annotations

import json
import shutil
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import anthropic
import openai
import pytest

from analyzer.emulator import EmulatorConfig, EmulatorThread
from analyzer.pcap.analyze import AnalyzeOptions, analyze_capture
from analyzer.protocol.record import InteractionRecord
from tests.support.defaults import CLIENT_TIMEOUT_S, MODEL
from tests.support.processes import Mitmdump
from tests.support.tcpdump import require_live_capture, tcpdump

pytestmark = [pytest.mark.timeout(120), pytest.mark.live]

# Paced so that thinking, answer and tool call arrive at visibly different times.
CONFIG = EmulatorConfig(prefill_ms=5.0, token_ms=8.0, tokens=12, think_tokens=6)
TOOL = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}


@dataclass
class Seen:
    """What the client saw: text, thinking, tool calls, counts, and when (wall clock) each kind first arrived."""

    marker: str
    text: str = ""
    thinking: str = ""
    tool_calls: list[Any] = field(default_factory=list)
    input_tokens: int | None = None
    output_tokens: int | None = None
    first: dict[str, float] = field(default_factory=dict)

    def saw(self, kind: str) -> None:
        self.first.setdefault(kind, time.time())


def anthropic_session(url: str) -> Seen:
    seen = Seen("a" + uuid.uuid4().hex[:10])
    client = anthropic.Anthropic(base_url=url, api_key="unused", timeout=CLIENT_TIMEOUT_S, max_retries=0)
    tools: Any = [{"name": "get_weather", "description": "Weather for a city", "input_schema": TOOL}]
    with client.messages.stream(
        model=MODEL,
        max_tokens=400,
        system="Answer briefly.",
        thinking={"type": "enabled", "budget_tokens": 200},
        tools=tools,
        messages=[{"role": "user", "content": f"Weather in Paris? {seen.marker}"}],
    ) as stream:
        for event in stream:
            if event.type == "content_block_delta":
                kind = {"thinking_delta": "thinking", "text_delta": "content", "input_json_delta": "tool"}
                if event.delta.type in kind:
                    seen.saw(kind[event.delta.type])
        message = stream.get_final_message()
    for block in message.content:
        if block.type == "thinking":
            seen.thinking += block.thinking
        elif block.type == "text":
            seen.text += block.text
        elif block.type == "tool_use":
            seen.tool_calls.append({"type": "tool_use", "id": block.id, "name": block.name, "input": block.input})
    seen.input_tokens, seen.output_tokens = message.usage.input_tokens, message.usage.output_tokens
    return seen


def responses_session(url: str, *, tool: bool) -> Seen:
    seen = Seen("r" + uuid.uuid4().hex[:10])
    client = openai.OpenAI(base_url=url + "/v1", api_key="unused", timeout=CLIENT_TIMEOUT_S, max_retries=0)
    tools: Any = [{"type": "function", "name": "get_weather", "parameters": TOOL, "strict": False}] if tool else []
    with client.responses.stream(
        model=MODEL,
        instructions="Answer briefly.",
        input=[{"role": "user", "content": f"Say hello {seen.marker}"}],
        reasoning={"effort": "low"},
        tools=tools,
        # No answer text before the call: Ollama's converter gives text and a later function call the same
        # output_index (the message item is never closed), which the openai client's stream rejects.
        extra_body={"emulator_tokens": 0} if tool else None,
    ) as stream:
        for event in stream:
            kind = {
                "response.reasoning_summary_text.delta": "thinking",
                "response.output_text.delta": "content",
                "response.function_call_arguments.delta": "tool",
            }.get(event.type)
            if kind:
                seen.saw(kind)
        response = stream.get_final_response()
    for item in response.output:
        if item.type == "reasoning":
            seen.thinking += "".join(part.text for part in item.summary)
        elif item.type == "message":
            seen.text += "".join(part.text for part in item.content if part.type == "output_text")
        elif item.type == "function_call":
            call = {"type": "function_call", "call_id": item.call_id, "name": item.name, "arguments": item.arguments}
            seen.tool_calls.append(call)
    assert response.usage is not None
    seen.input_tokens, seen.output_tokens = response.usage.input_tokens, response.usage.output_tokens
    return seen


def chat_session(url: str) -> Seen:
    seen = Seen("c" + uuid.uuid4().hex[:10])
    client = openai.OpenAI(base_url=url + "/v1", api_key="unused", timeout=CLIENT_TIMEOUT_S, max_retries=0)
    tools: Any = [{"type": "function", "function": {"name": "get_weather", "parameters": TOOL}}]
    stream = client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": f"Weather? {seen.marker}"}],
        reasoning_effort="low",
        tools=tools,
        stream=True,
        stream_options={"include_usage": True},
    )
    for chunk in stream:
        if chunk.usage is not None:
            seen.input_tokens, seen.output_tokens = chunk.usage.prompt_tokens, chunk.usage.completion_tokens
        for choice in chunk.choices:
            delta: Any = choice.delta
            if getattr(delta, "reasoning", None):
                seen.saw("thinking")
                seen.thinking += delta.reasoning
            if delta.content:
                seen.saw("content")
                seen.text += delta.content
            if delta.tool_calls:
                seen.saw("tool")
                seen.tool_calls += [c.model_dump(exclude_none=True) for c in delta.tool_calls]
    return seen


def at(record: InteractionRecord, ms: float | None) -> float:
    """The wall-clock time ``ms`` after the record's start."""
    assert ms is not None
    return datetime.fromisoformat(record.started_at).timestamp() + ms / 1000


def check_against_client(record: InteractionRecord, seen: Seen, *, source: str) -> None:
    """Same text, thinking, tool calls and counts as the client; first tokens in order, each no later than the
    client saw it (the recorder sits between the server and the client)."""
    assert (record.response_text, record.thinking_text) == (seen.text, seen.thinking), source
    assert (record.prompt_eval_count, record.eval_count) == (seen.input_tokens, seen.output_tokens), source
    assert record.complete and record.flags == [], (source, record.flags)
    kinds = {"thinking": record.ttft_thinking_ms, "content": record.ttft_content_ms, "tool": record.ttft_tool_ms}
    assert {k for k, v in kinds.items() if v is not None} == set(seen.first), source
    for kind, ms in kinds.items():
        if ms is not None:
            assert at(record, ms) <= seen.first[kind] + 0.002, (source, kind)  # 2 ms: clock-reading rounding
    assert record.ttft_thinking_ms is not None and record.thinking_ms is not None
    assert record.ttft_thinking_ms == record.ttft_ms
    answer = min(v for v in (record.ttft_content_ms, record.ttft_tool_ms) if v is not None)
    assert record.thinking_ms == pytest.approx(answer - record.ttft_thinking_ms, abs=0.002)
    assert record.thinking_ms > 0


@pytest.fixture(scope="module")
def sessions(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The sessions through a real mitmdump, captured on lo; the proxy log and the capture's client-leg records."""
    require_live_capture()
    base = tmp_path_factory.mktemp("today")
    capture = base / "today.pcap"
    with (
        EmulatorThread(CONFIG) as emulator,
        Mitmdump(emulator.url, "127.0.0.1", base / "log", base / "console.txt") as proxy,
        tcpdump(capture, f"tcp port {emulator.port} or tcp port {proxy.port}") as run,
    ):
        seen = {
            "messages": anthropic_session(proxy.url),
            "responses": responses_session(proxy.url, tool=False),
            "responses-tool": responses_session(proxy.url, tool=True),
            "chat": chat_session(proxy.url),
        }
        logged = {name: proxy.wait_for(s.marker)[0] for name, s in seen.items()}
        proxy_port = proxy.port
    assert run.dropped == 0, run.stderr
    return {"seen": seen, "logged": logged, "capture": capture, "proxy_port": proxy_port}


def captured(sessions: dict[str, Any], engine: str) -> dict[str, InteractionRecord]:
    result = analyze_capture(sessions["capture"], AnalyzeOptions(ports=(sessions["proxy_port"],), engine=engine))
    assert result.error is None
    by_marker = {}
    for name, seen in sessions["seen"].items():
        matching = [r for r in result.records if seen.marker in r.to_json()]
        assert len(matching) == 1, (name, len(matching))
        by_marker[name] = matching[0]
    return by_marker


@pytest.mark.parametrize("name", ["messages", "responses", "responses-tool", "chat"])
def test_proxy_record_matches_the_client(sessions: dict[str, Any], name: str) -> None:
    record, seen = sessions["logged"][name], sessions["seen"][name]
    check_against_client(record, seen, source="proxy")
    if name != "chat":  # OpenAI chat tool-call deltas are merged per index; the others are compared whole
        assert record.tool_calls == seen.tool_calls
    expected_kind = {"messages": ("anthropic", "messages"), "chat": ("openai", "chat")}.get(
        name, ("openai", "responses")
    )
    assert (record.api, record.kind, record.stream) == (*expected_kind, True)
    assert record.opt_think == ("true" if name == "messages" else "low")


def test_anthropic_options_and_tool(sessions: dict[str, Any]) -> None:
    record = sessions["logged"]["messages"]
    assert (record.opt_num_predict, record.opt_tools, record.system, record.done_reason) == (
        400,
        1,
        "Answer briefly.",
        "tool_use",
    )
    assert record.tool_calls[0]["input"] == {"city": record.tool_calls[0]["input"]["city"]}
    assert record.ttft_tool_ms is not None and record.ttft_content_ms is not None
    assert record.ttft_content_ms < record.ttft_tool_ms


@pytest.mark.parametrize("engine", ["fast", "tshark"])
def test_capture_gives_the_same_records(sessions: dict[str, Any], engine: str) -> None:
    if engine == "tshark" and shutil.which("tshark") is None:
        pytest.skip("tshark not installed")
    records = captured(sessions, engine)
    for name, record in records.items():
        logged, seen = sessions["logged"][name], sessions["seen"][name]
        check_against_client(record, seen, source=f"pcap-{engine}")
        same = ("api", "kind", "model", "prompt", "system", "tool_calls", "done_reason", "chunks", "stream")
        same += tuple(c for c in logged.to_dict() if c.startswith("opt_"))
        assert {c: getattr(record, c) for c in same} == {c: getattr(logged, c) for c in same}, name


def test_zstd_request_body_is_recorded(tmp_path: Path) -> None:
    """Codex-style: a zstd-compressed /v1/responses body through the proxy."""
    import httpx
    import zstandard

    marker = "z" + uuid.uuid4().hex[:10]
    body = {"model": MODEL, "input": f"compressed {marker}", "max_output_tokens": 5}
    packed = zstandard.ZstdCompressor().compress(json.dumps(body).encode())
    with (
        EmulatorThread(CONFIG) as emulator,
        Mitmdump(emulator.url, "127.0.0.1", tmp_path / "log", tmp_path / "console.txt") as proxy,
    ):
        reply = httpx.post(
            proxy.url + "/v1/responses",
            content=packed,
            headers={"Content-Type": "application/json", "Content-Encoding": "zstd"},
            timeout=CLIENT_TIMEOUT_S,
        )
        assert reply.status_code == 200, reply.text
        record = proxy.wait_for(marker)[0]
    assert (record.prompt, record.opt_num_predict, record.request_bytes) == (body["input"], 5, len(packed))
    assert record.response_text == reply.json()["output"][0]["content"][0]["text"]
    assert record.flags == []
