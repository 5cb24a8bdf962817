"""Record → GenAI span and measurements: names, ids, times, error types, the hidden wait and the buckets."""

from __future__ import annotations

from analyzer.export import semconv as sc
from analyzer.export.mapping import epoch_ns, error_type, hidden_wait_s, ids_for, measurements, span_data
from analyzer.protocol.record import InteractionRecord


def chat(**fields) -> InteractionRecord:
    base = dict(
        id="flow-1",
        source="proxy",
        started_at="2026-11-28T21:53:29.366097Z",
        server="127.0.0.1:11434",
        method="POST",
        path="/api/chat",
        status=200,
        api="ollama",
        kind="chat",
        model="llama3.2:1b",
        stream=True,
        prompt="hi",
        messages=[{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}],
        system="be brief",
        response_text="hello",
        done_reason="stop",
        complete=True,
        ttft_ms=12.5,
        total_ms=40.0,
        chunks=3,
        wire_tokens_per_s=50.0,
        prompt_eval_count=7,
        eval_count=2,
        total_duration_ms=35.0,
        load_duration_ms=5.0,
        prompt_eval_duration_ms=10.0,
        eval_duration_ms=15.0,
    )
    return InteractionRecord(**{**base, **fields})


def test_version_and_buckets_are_the_conventions() -> None:
    assert sc.SEMCONV_VERSION == "1.41.0" and sc.SCHEMA_URL.endswith("/1.41.0")
    assert sc.DURATION_BUCKETS[0] == 0.01 and sc.DURATION_BUCKETS[-1] == 81.92 and len(sc.DURATION_BUCKETS) == 14
    assert sc.TOKEN_BUCKETS[:3] == (1, 4, 16) and sc.TOKEN_BUCKETS[-1] == 4**13
    assert sc.FIRST_TOKEN_BUCKETS[0] == 0.001 and sc.FIRST_TOKEN_BUCKETS[-1] == 10


def test_span_name_kind_times_and_ids() -> None:
    span = span_data(chat())
    assert span.name == "chat llama3.2:1b"
    assert span.start_ns == 1_795_902_809_366_097_000
    assert span.end_ns == span.start_ns + 40_000_000
    assert (span.trace_id, span.span_id) == ids_for("flow-1") != ids_for("flow-2")
    assert span.attributes[sc.OPERATION_NAME] == "chat" and span.attributes[sc.PROVIDER_NAME] == "ollama"
    assert span.attributes[sc.SERVER_ADDRESS] == "127.0.0.1" and span.attributes[sc.SERVER_PORT] == 11434
    assert span.attributes[sc.TIME_TO_FIRST_CHUNK] == 0.0125
    assert span.attributes[sc.FINISH_REASONS] == ["stop"]
    assert [(e.name, e.timestamp_ns) for e in span.events] == [(sc.EVENT_FIRST_TOKEN, span.start_ns + 12_500_000)]
    assert span.error is None and sc.ERROR_TYPE not in span.attributes


def test_content_only_on_opt_in() -> None:
    assert sc.INPUT_MESSAGES not in span_data(chat()).attributes
    attributes = span_data(chat(), content=True).attributes
    assert attributes[sc.INPUT_MESSAGES] == '[{"role":"user","parts":[{"type":"text","content":"hi"}]}]'
    assert '"content":"hello"' in str(attributes[sc.OUTPUT_MESSAGES])
    assert attributes[sc.SYSTEM_INSTRUCTIONS] == '[{"type":"text","content":"be brief"}]'


def test_hidden_wait_is_clamped_at_zero_and_per_endpoint() -> None:
    assert hidden_wait_s(chat()) == 0.005
    assert hidden_wait_s(chat(total_duration_ms=20.0)) == 0.0
    # native chat: Go's omitempty dropped a zero load_duration, so it is 0, not unknown (the report agrees)
    assert hidden_wait_s(chat(load_duration_ms=None)) == 0.01
    # the OpenAI API never reports the parts: unknown, however Ollama's total would read
    assert hidden_wait_s(chat(api="openai", path="/v1/chat/completions")) is None


def test_error_types() -> None:
    assert error_type(chat(status=404, error="model 'x' not found")) == "404"
    assert error_type(chat(flags=["upstream_failed"], status=None, error="refused")) == "upstream_failed"
    assert error_type(chat(flags=["error_mid_stream"], error="boom")) == "error_mid_stream"
    assert error_type(chat(error="odd")) == "_OTHER"
    failed = span_data(chat(status=500, error="boom"))
    assert failed.error == "boom" and failed.events[-1].name == "exception"


def test_ipv6_server() -> None:
    attributes = span_data(chat(server="[::1]:11434")).attributes
    assert attributes[sc.SERVER_ADDRESS] == "::1" and attributes[sc.SERVER_PORT] == 11434


def test_measurements() -> None:
    values = {(m.metric, m.attributes.get(sc.TOKEN_TYPE)): m.value for m in measurements(chat())}
    assert values[(sc.CLIENT_OPERATION_DURATION, None)] == 0.04
    assert values[(sc.CLIENT_TIME_TO_FIRST_CHUNK, None)] == 0.0125
    assert values[(sc.CLIENT_TIME_PER_OUTPUT_CHUNK, None)] == 0.02
    assert values[(sc.CLIENT_TOKEN_USAGE, "input")] == 7 and values[(sc.CLIENT_TOKEN_USAGE, "output")] == 2
    assert values[(sc.SERVER_TIME_TO_FIRST_TOKEN, None)] == 0.02
    assert values[(sc.SERVER_TIME_PER_OUTPUT_TOKEN, None)] == 0.0075
    assert values[(sc.OLLAMA_MODEL_LOAD_DURATION, None)] == 0.005
    assert measurements(chat(kind="pull", path="/api/pull")) == []
    assert epoch_ns("1970-01-01T00:00:01.000001Z") == 1_000_001_000


def test_anthropic_and_responses_are_chat_with_their_usage_options_and_thinking() -> None:
    anthropic = chat(
        api="anthropic",
        kind="messages",
        path="/v1/messages",
        total_duration_ms=None,
        prompt_eval_count=21,
        eval_count=9,
        prompt_eval_cached_count=16,
        opt_num_predict=512,
        opt_temperature=0.2,
        ttft_thinking_ms=10.0,
        thinking_ms=250.0,
        remote=False,
    )
    span = span_data(anthropic)
    attributes = span.attributes
    assert (attributes[sc.OPERATION_NAME], attributes[sc.PROVIDER_NAME], attributes[sc.OLLAMA_API]) == (
        "chat",
        "ollama",
        "anthropic",
    )
    assert (attributes[sc.USAGE_INPUT_TOKENS], attributes[sc.USAGE_OUTPUT_TOKENS]) == (21, 9)
    assert attributes[sc.USAGE_CACHE_READ_INPUT_TOKENS] == 16
    assert (attributes[sc.REQUEST_MAX_TOKENS], attributes[sc.REQUEST_TEMPERATURE]) == (512, 0.2)
    assert (attributes[sc.OLLAMA_TTFT_THINKING], attributes[sc.OLLAMA_THINKING], attributes[sc.OLLAMA_REMOTE]) == (
        0.01,
        0.25,
        False,
    )
    assert sc.REQUEST_SEED not in attributes and sc.OLLAMA_TTFT_TOOL not in attributes  # unknown: absent, never 0
    usage = {(m.metric, m.attributes.get(sc.TOKEN_TYPE)): m.value for m in measurements(anthropic)}
    assert usage[(sc.CLIENT_TOKEN_USAGE, "input")] == 21
    responses = span_data(chat(api="openai", kind="responses", path="/v1/responses")).attributes
    assert responses[sc.OPERATION_NAME] == "chat"
    # model management is no inference: no measurements
    assert measurements(chat(kind="load", response_text="", eval_count=None)) == []
