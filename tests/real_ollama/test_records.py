"""Item 1: records are what the real server sent (official clients → mitmdump + addon → real Ollama v0.24.0).

One scripted session (``session.CALLS``) runs once per test run (``recorded_session``); each test checks one
property for every call it applies to: the text equals what the client received, Ollama's counters and its four
durations equal the raw final object, errors are recorded with Ollama's own status and text, and TTFT and the gaps
between tokens lie between the server's own ``created_at`` stamps and the client's clock.
"""

from __future__ import annotations

import itertools

import pytest

from tests.real_ollama.conftest import RecordedSession
from tests.real_ollama.session import CALLS, STREAMED, rfc3339

pytestmark = [pytest.mark.real_ollama, pytest.mark.timeout(600)]

GENERATION = [n for n, (_, path, _, _) in CALLS.items() if path.endswith(("generate", "chat", "completions"))]
ERRORS = ["think", "tools", "missing_model"]
TEXT = [n for n in GENERATION if n not in ERRORS]
NATIVE_COUNTED = [n for n in TEXT if CALLS[n][2] == "ollama"]
DURATIONS = ("total_duration", "load_duration", "prompt_eval_duration", "eval_duration")
CLOCK_ROUNDING_MS = 0.002  # records keep milliseconds to the microsecond


def ms(ns: int) -> float:
    return round(ns / 1e6, 3)


@pytest.mark.parametrize("name", list(CALLS))
def test_each_call_is_one_record_of_its_endpoint(recorded_session: RecordedSession, name: str) -> None:
    got, record = recorded_session.pair(name)
    assert record.path == got.path and record.api == got.api, name
    assert record.stream == got.stream, name
    assert record.status == got.status, name
    assert record.complete, name
    assert record.flags == [], name


@pytest.mark.parametrize("name", TEXT)
def test_text_equals_what_the_client_received(recorded_session: RecordedSession, name: str) -> None:
    got, record = recorded_session.pair(name)
    assert got.text, f"{name}: the model said nothing; the comparison would prove nothing"
    assert record.response_text == got.text, name
    assert record.done_reason == got.done_reason, name
    assert record.chunks == got.chunks, name
    assert record.model == recorded_session.server.model


@pytest.mark.parametrize("name", NATIVE_COUNTED)
def test_counters_and_durations_equal_the_final_object(recorded_session: RecordedSession, name: str) -> None:
    got, record = recorded_session.pair(name)
    final = got.final
    assert record.prompt_eval_count == final["prompt_eval_count"], name
    assert record.eval_count == final["eval_count"], name
    for duration in DURATIONS:
        assert getattr(record, f"{duration}_ms") == ms(final[duration]), f"{name}: {duration}"


@pytest.mark.parametrize("name", ["oai_chat_single", "oai_chat_stream_usage", "oai_completion_single"])
def test_openai_usage_is_the_record_counters(recorded_session: RecordedSession, name: str) -> None:
    got, record = recorded_session.pair(name)
    assert record.prompt_eval_count == got.final["prompt_eval_count"], name
    assert record.eval_count == got.final["eval_count"], name
    assert record.total_duration_ms is None and record.eval_duration_ms is None, name  # OpenAI carries no durations


@pytest.mark.parametrize("name", ["oai_chat_stream", "oai_completion_stream"])
def test_openai_stream_without_usage_has_no_counters(recorded_session: RecordedSession, name: str) -> None:
    got, record = recorded_session.pair(name)
    assert got.final == {}
    assert record.prompt_eval_count is None and record.eval_count is None, name


def test_embed_counters_equal_the_reply(recorded_session: RecordedSession) -> None:
    got, record = recorded_session.pair("embed")
    assert record.kind == "embed" and record.prompt == f"embed {got.word}"
    assert record.prompt_eval_count == got.final["prompt_eval_count"]
    assert record.total_duration_ms == ms(got.final["total_duration"])
    assert record.load_duration_ms == ms(got.final["load_duration"])
    assert got.final["dimensions"] == 576  # SmolLM2-135M's hidden size: the real model embedded


@pytest.mark.parametrize("name", ERRORS)
def test_errors_are_recorded_with_ollamas_status_and_text(recorded_session: RecordedSession, name: str) -> None:
    got, record = recorded_session.pair(name)
    assert got.status in (400, 404), name
    assert record.status == got.status and record.error == got.error, name
    assert record.response_text in ("", None) and record.eval_count is None, name


def test_smollm2_refuses_think_and_tools_with_ollamas_texts(recorded_session: RecordedSession) -> None:
    model = recorded_session.server.model
    assert recorded_session.pair("think")[1].error == f'"{model}" does not support thinking'
    assert recorded_session.pair("tools")[1].error == f"registry.ollama.ai/library/{model} does not support tools"
    assert recorded_session.pair("missing_model")[1].status == 404


def test_format_schema_reply_is_recorded_verbatim(recorded_session: RecordedSession) -> None:
    got, record = recorded_session.pair("format_schema")
    assert record.response_text == got.text and got.text.lstrip().startswith("{")


@pytest.mark.parametrize("name", [n for n in STREAMED if n in TEXT])
def test_first_token_lies_between_the_server_stamp_and_the_client(recorded_session: RecordedSession, name: str) -> None:
    """The proxy saw the first token after the client sent the request (and, native, after Ollama stamped the
    object) and before the client had it; likewise for the last token."""
    got, record = recorded_session.pair(name)
    started = rfc3339(record.started_at)
    assert record.ttft_ms is not None and record.gen_ms is not None, name
    first = started + record.ttft_ms / 1000
    last = first + record.gen_ms / 1000
    slack = CLOCK_ROUNDING_MS / 1000
    # the start may be off by its own documented bound (a kernel stamp: 0.5 ms; TCP_INFO: one kernel tick)
    assert got.sent_at - max(slack, (record.start_bound_ms or 0.0) / 1000) <= started, name
    assert first <= got.pieces[0].received_at + slack, name
    assert last <= got.pieces[-1].received_at + slack, name
    if got.pieces[0].created_at is not None:  # native objects carry Ollama's own clock
        assert got.pieces[0].created_at - slack <= first, name
        assert got.pieces[-1].created_at - slack <= last, name


@pytest.mark.parametrize("name", [n for n in STREAMED if n in TEXT and CALLS[n][2] == "ollama"])
def test_largest_gap_lies_between_the_server_and_client_bounds(recorded_session: RecordedSession, name: str) -> None:
    """For consecutive tokens i-1, i: server_i - client_{i-1} <= proxy gap <= client_i - server_{i-1}."""
    got, record = recorded_session.pair(name)
    pieces = got.pieces
    assert len(pieces) >= 3 and record.gap_max_ms is not None, name
    pairs = list(itertools.pairwise(pieces))
    upper = max(b.received_at - a.created_at for a, b in pairs) * 1000
    lower = max(b.created_at - a.received_at for a, b in pairs) * 1000
    assert lower - 2 * CLOCK_ROUNDING_MS <= record.gap_max_ms <= upper + 2 * CLOCK_ROUNDING_MS, name
