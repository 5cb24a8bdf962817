"""The findings engine on constructed records: each trouble gives exactly its code with exactly its ids, and a
clean night gives nothing."""

from __future__ import annotations

from dataclasses import replace

import pytest
from report_records import clean_night, rec

from analyzer.protocol.record import InteractionRecord
from analyzer.report import analyze
from analyzer.report.derive import hidden_wait_ms, to_request, wire_overhead_ms
from analyzer.report.findings import (
    COLD_LOAD_MS,
    QUEUE_WAIT_MS,
    SLOW_MIN_RUN,
    STALL_GAP_RATIO,
    STALL_MIN_GAP_MS,
)


def codes_and_ids(records: list[InteractionRecord]) -> dict[str, list[str]]:
    return {f.code: f.ids for f in analyze(records).findings}


def test_clean_night_has_no_findings() -> None:
    analysis = analyze(clean_night())
    assert analysis.findings == []
    assert analysis.headline["requests"] == 40
    assert analysis.headline["errors"] == 0


def test_derived_timings() -> None:
    r = rec(
        "a",
        0,
        total_duration_ms=1000.0,
        load_duration_ms=100.0,
        prompt_eval_duration_ms=50.0,
        eval_duration_ms=600.0,
        total_ms=1030.0,
    )
    assert hidden_wait_ms(r) == 250.0
    assert wire_overhead_ms(r) == 30.0
    # never negative (rounding in Ollama's counters), None without Ollama's total
    assert hidden_wait_ms(rec("b", 0, total_duration_ms=100.0, eval_duration_ms=120.0)) == 0.0
    assert hidden_wait_ms(rec("c", 0, total_duration_ms=None)) is None
    assert wire_overhead_ms(rec("d", 0, total_ms=None)) is None
    assert to_request(rec("e", 0, started_at="not a time")) is None


def test_cold_load() -> None:
    records = [*clean_night(), rec("cold", 400, load_duration_ms=COLD_LOAD_MS + 2500, total_duration_ms=4100.0)]
    assert codes_and_ids(records) == {"cold_load": ["cold"]}


def test_model_thrash_needs_two_reloads() -> None:
    def switching(n: int) -> list[InteractionRecord]:
        records = []
        for i in range(n + 1):
            model = "big-a" if i % 2 == 0 else "big-b"
            records.append(rec(f"sw{i}", i * 10.0, model=model, load_duration_ms=3000.0, total_duration_ms=3600.0))
        return records

    one_reload = codes_and_ids(switching(2))
    assert "model_thrash" not in one_reload
    found = codes_and_ids(switching(3))
    assert found["model_thrash"] == ["sw2", "sw3"]  # sw0 and sw1 are first loads, not reloads
    assert found["cold_load"] == ["sw0", "sw1", "sw2", "sw3"]


def test_queueing_needs_overlap_and_a_large_hidden_wait() -> None:
    wait = QUEUE_WAIT_MS + 700
    first = rec("q1", 100.0, total_ms=600.0)
    # each starts generating once the one before it finished: its first token comes after the wait
    second = rec("q2", 100.1, total_duration_ms=575.0 + wait, total_ms=590.0 + wait, ttft_ms=80.0 + wait)
    third = rec("q3", 100.2, total_duration_ms=575.0 + 2 * wait, total_ms=590.0 + 2 * wait, ttft_ms=80.0 + 2 * wait)
    assert codes_and_ids([*clean_night(), first, second, third]) == {"queueing": ["q2", "q3"]}
    # the same hidden waits on requests that decoded alongside the first one (two slots, slow batches): no slot
    # was waited for
    batched = [replace(second, ttft_ms=120.0), replace(third, ttft_ms=160.0)]
    assert codes_and_ids([*clean_night(), first, *batched]) == {}
    # The same hidden wait without any overlapping request is not queueing.
    alone = rec("alone", 900.0, total_duration_ms=575.0 + wait, total_ms=590.0 + wait)
    assert codes_and_ids([*clean_night(), alone]) == {}


def test_context_truncated_needs_growing_prompts_at_a_ceiling() -> None:
    # Prompts of 16,000+ characters need ~4,000+ tokens; Ollama evaluated 2,048 of each.
    growing = [rec(f"c{i}", 300 + i, prompt_eval_count=2048, prompt="word " * (3200 + 800 * i)) for i in range(4)]
    assert codes_and_ids([*clean_night(), *growing]) == {"context_truncated": ["c0", "c1", "c2", "c3"]}
    # The same prompt repeated: the count is the same because the prompt is, not because of a ceiling.
    same = [rec(f"s{i}", 300 + i, prompt_eval_count=2048, prompt="word " * 3200) for i in range(4)]
    assert codes_and_ids([*clean_night(), *same]) == {}
    # Prompts that grow while their counts stay equal but the text fits the tokens (short, templated prompts).
    short = [rec(f"t{i}", 300 + i, prompt_eval_count=40, prompt="x" * (60 + 10 * i)) for i in range(4)]
    assert codes_and_ids(short) == {}
    # Longer prompts count more tokens with a fixed template overhead: the biggest sit at the top, not cut.
    fitted = [rec(f"f{i}", i, prompt_eval_count=20 + i % 50, prompt="abcd" * (i % 50 + 1)) for i in range(200)]
    assert codes_and_ids(fitted) == {}


def test_length_cutoff() -> None:
    records = [*clean_night(), rec("cut", 400, done_reason="length")]
    assert codes_and_ids(records) == {"length_cutoff": ["cut"]}


def test_stall_is_long_and_far_above_the_median_gap() -> None:
    stalled = rec("stall", 400, gap_p50_ms=10.0, gap_max_ms=STALL_MIN_GAP_MS + 500)
    long_but_steady = rec("slow", 410, gap_p50_ms=(STALL_MIN_GAP_MS + 500) / STALL_GAP_RATIO * 2, gap_max_ms=1500.0)
    short = rec("short", 420, gap_p50_ms=1.0, gap_max_ms=STALL_MIN_GAP_MS / 2)
    # a tool call arrives whole after the model wrote it: a long silence that is not a stall
    tool = rec("tool", 430, gap_p50_ms=10.0, gap_max_ms=2500.0, tool_calls=[{"function": {"name": "f"}}])
    assert codes_and_ids([*clean_night(), stalled, long_but_steady, short, tool]) == {"stall": ["stall"]}
    # a gap while another request of the same model had its prompt evaluated: the runner paused the batch for it
    paused = rec("paused", 500, gap_p50_ms=10.0, gap_max_ms=2500.0, total_ms=4000.0)
    joiner = rec("joiner", 501, ttft_ms=2400.0, total_ms=3000.0, total_duration_ms=2990.0)
    assert codes_and_ids([*clean_night(), paused, joiner]) == {}


def test_slow_generation_needs_a_run() -> None:
    base = [rec(f"n{i}", i * 5.0) for i in range(10)]
    slow = [rec(f"slow{i}", 100 + i * 5.0, eval_tokens_per_s=30.0) for i in range(SLOW_MIN_RUN)]
    after = [rec(f"m{i}", 200 + i * 5.0) for i in range(3)]
    assert codes_and_ids([*base, *slow, *after]) == {"slow_generation": [r.id for r in slow]}
    # One slow request between fast ones is noise, not a slow period.
    assert codes_and_ids([*base, slow[0], *after]) == {}


@pytest.mark.parametrize(
    ("overrides", "code"),
    [
        ({"status": 404, "error": "model 'nope' not found", "model": "nope"}, "model_not_found"),
        (
            {"status": 500, "error": "model requires more system memory (9.1 GiB) than is available (4.0 GiB)"},
            "out_of_memory",
        ),
        ({"status": 400, "error": "the input length exceeds the context length"}, "context_exceeded"),
        (
            {"status": 500, "error": "input exceeds maximum context length and cannot be truncated further"},
            "context_exceeded",
        ),
        ({"status": 503, "error": "server busy, please try again.  maximum pending requests exceeded"}, "server_busy"),
        ({"status": 500, "error": "llama runner process has terminated"}, "server_error"),
        ({"status": 400, "error": "invalid options"}, "bad_request"),
        ({"error": "something broke", "flags": ["error_mid_stream"], "complete": False}, "error_mid_stream"),
        (
            {"status": None, "error": "Connection refused", "flags": ["upstream_failed", "no_response"]},
            "upstream_failed",
        ),
        ({"flags": ["client_aborted"], "complete": False, "done_reason": None}, "client_aborted"),
    ],
)
def test_one_error_finding_per_category(overrides: dict[str, object], code: str) -> None:
    failed = [rec(f"e{i}", 400 + i, **overrides) for i in range(2)]
    found = analyze([*clean_night(), *failed])
    assert {f.code: f.ids for f in found.findings} == {code: ["e0", "e1"]}
    assert found.headline["errors"] == 2
    assert found.findings[0].group == "errors"


def test_capture_loss() -> None:
    records = [
        *clean_night(),
        rec("gap", 400, source="pcap", flags=["gap_in_capture"]),
        rec("cut", 410, source="pcap", flags=["capture_ended_mid_response"], complete=False),
    ]
    found = analyze(records).findings
    assert [(f.code, f.ids, f.severity) for f in found] == [("capture_loss", ["gap", "cut"], "warning")]


def test_every_finding_has_evidence_times_and_a_suggestion() -> None:
    records = [
        *clean_night(),
        rec("cold", 400, load_duration_ms=5000.0, total_duration_ms=5600.0),
        rec("cut", 410, done_reason="length"),
        rec("oom", 420, status=500, error="model requires more system memory (9.1 GiB) than is available (4.0 GiB)"),
    ]
    findings = analyze(records).findings
    assert [f.code for f in findings] == ["out_of_memory", "cold_load", "length_cutoff"]  # errors first
    for f in findings:
        data = f.to_dict()
        assert data["ids"] and data["count"] == len(data["ids"])
        assert data["first"].endswith("Z") and data["first"] <= data["last"]
        assert data["suggestion"] and data["detail"] and data["title"]


# -- each defect of issue 17, with the clean look-alike that must stay silent ---------------------------------


def test_a_model_name_never_decides_the_error_category() -> None:
    missing = rec(
        "bloom", 400, model="bloom:560m", status=404, error='model "bloom:560m" not found, try pulling it first'
    )
    assert codes_and_ids([*clean_night(), missing]) == {"model_not_found": ["bloom"]}
    no_think = rec(
        "think", 410, model="oom-context-length", status=400, error='"oom-context-length" does not support thinking'
    )
    assert codes_and_ids([*clean_night(), no_think]) == {"bad_request": ["think"]}
    died = rec("died", 420, status=500, error="llama runner process has terminated: cudaMalloc failed: out of memory")
    assert codes_and_ids([*clean_night(), died]) == {"out_of_memory": ["died"]}


def test_queueing_needs_the_same_model_and_a_hidden_wait_not_a_load() -> None:
    wait = QUEUE_WAIT_MS + 700
    busy_other = rec("other", 102.0, model="qwen2.5", total_ms=5000.0, total_duration_ms=4990.0)
    # waited while *another* model was busy: its slots are not this model's
    waited = rec("mine", 102.5, total_duration_ms=575.0 + wait, total_ms=590.0 + wait)
    assert "queueing" not in codes_and_ids([*clean_night(), busy_other, waited])
    # the same model, but the wait is in load_duration (a load in progress): cold_load, not queueing
    first = rec("q1", 200.0, total_ms=3000.0, total_duration_ms=2990.0, load_duration_ms=2400.0)
    joined = rec("q2", 200.1, total_ms=2900.0, total_duration_ms=2880.0, load_duration_ms=2300.0)
    assert codes_and_ids([*clean_night(), first, joined]) == {"cold_load": ["q1", "q2"]}


def test_cold_load_is_judged_against_the_models_warm_load() -> None:
    warm = [rec(f"w{i}", i * 5.0, model="smollm2", load_duration_ms=20.0 + i % 3 * 10) for i in range(6)]
    reload = rec("reload", 40.0, model="smollm2", load_duration_ms=620.0, total_duration_ms=1180.0, total_ms=1190.0)
    found = analyze([*warm, reload]).findings
    assert {f.code: f.ids for f in found} == {"cold_load": ["reload"]}
    assert found[0].numbers["warm_load_ms"] == {"smollm2": 20.0}  # lower quartile of 20, 20, 30, 30, 40, 40, 620
    # jitter of a warm model's look-ups is not a load
    jitter = [rec(f"j{i}", i * 5.0, model="smollm2", load_duration_ms=20.0 + (i * 37) % 90) for i in range(20)]
    assert codes_and_ids(jitter) == {}


def test_cold_load_tells_a_scheduler_wait_from_loading() -> None:
    first = rec("first", 100.0, load_duration_ms=2500.0, total_duration_ms=3100.0, total_ms=3110.0)
    joined = rec("joined", 100.5, load_duration_ms=2100.0, total_duration_ms=2700.0, total_ms=2710.0)
    other = rec("other", 200.0, model="qwen2.5", load_duration_ms=2000.0, total_duration_ms=2600.0, total_ms=2610.0)
    behind = rec("behind", 200.5, model="mistral", load_duration_ms=3500.0, total_duration_ms=4100.0, total_ms=4110.0)
    found = analyze([first, joined, other, behind]).findings
    assert [f.code for f in found] == ["cold_load"]
    assert found[0].numbers["causes"] == {"loaded": 2, "joined": 1, "behind_other_model": 1}
    assert "waiting for the scheduler" in found[0].detail


def test_first_loads_and_expiries_are_not_thrash() -> None:
    each_once = [
        rec(f"m{i}", i * 20.0, model=f"model-{i}", load_duration_ms=3000.0, total_duration_ms=3600.0) for i in range(4)
    ]
    assert codes_and_ids(each_once) == {"cold_load": [r.id for r in each_once]}
    # a and b alternate, but each comes back after its keep_alive ran out: expiry, not eviction
    expired = [
        rec(f"x{i}", i * 600.0, model=("a", "b")[i % 2], load_duration_ms=3000.0, total_duration_ms=3600.0)
        for i in range(6)
    ]
    assert "model_thrash" not in codes_and_ids(expired)
    # the same with keep_alive -1 (forever) is eviction
    kept = [replace(r, opt_keep_alive="-1") for r in expired]
    assert codes_and_ids(kept)["model_thrash"] == ["x2", "x3", "x4", "x5"]


def _decoding(
    rid: str, second: float, rate: float, *, model: str = "llama3.2", ttft: float = 80.0
) -> InteractionRecord:
    """A streamed generate of 200 tokens at ``rate`` tokens/s after ``ttft`` ms."""
    decode_ms = 200 / rate * 1000
    return rec(
        rid,
        second,
        model=model,
        eval_count=200,
        eval_tokens_per_s=rate,
        eval_duration_ms=decode_ms,
        ttft_ms=ttft,
        total_ms=ttft + decode_ms,
        total_duration_ms=ttft + decode_ms - 10,
    )


def test_batched_streams_are_not_slow_generation() -> None:
    solo = [_decoding(f"solo{i}", i * 10.0, 100.0) for i in range(8)]
    # pairs decoding together (OLLAMA_NUM_PARALLEL=2) at 45 tok/s each: batching, not a slow machine
    batched = [_decoding(f"pair{i}", 100 + (i // 2) * 10 + (i % 2) * 0.05, 45.0) for i in range(12)]
    assert codes_and_ids([*solo, *batched]) == {}
    # a slow period among the batched ones is still found, against the batched rate
    slowed = [*solo, *batched[:6], *[_decoding(f"s{i}", 200 + (i // 2) * 20 + (i % 2) * 0.05, 15.0) for i in range(6)]]
    found = {f.code: f for f in analyze(slowed).findings}
    assert list(found) == ["slow_generation"]
    assert found["slow_generation"].ids == [f"s{i}" for i in range(6)]
    assert "1 at once 100 tok/s each, 2 at once 30 tok/s each" in found["slow_generation"].detail


def _chat(rid: str, second: float, turns: int, prompt_eval_count: int, **overrides: object) -> InteractionRecord:
    messages = [{"role": "system", "content": "be brief"}]
    for turn in range(turns):
        messages.append({"role": "user", "content": f"turn {turn}: " + "tell me more about the sea " * 20})
        messages.append({"role": "assistant", "content": "the sea is large " * 30})
    messages.append({"role": "user", "content": f"question {turns}"})
    return rec(rid, second, kind="chat", path="/api/chat", prompt=None, messages=messages,
               prompt_eval_count=prompt_eval_count, **overrides)  # fmt: skip


def test_chat_history_dropped_is_context_truncated() -> None:
    counts = [300, 560, 820, 1000, 760, 1010, 880]  # grows by ~260 a turn until num_ctx, then falls or plateaus
    chats = [_chat(f"t{i}", 300 + i * 20, i, c, opt_num_ctx=1024) for i, c in enumerate(counts)]
    assert codes_and_ids([*clean_night(), *chats]) == {"context_truncated": ["t4", "t5", "t6"]}
    # the same conversation with room to grow: silent
    growing = [_chat(f"g{i}", 300 + i * 20, i, 300 + 260 * i, opt_num_ctx=8192) for i in range(7)]
    assert codes_and_ids([*clean_night(), *growing]) == {}
    # a client that keeps a window of its own (messages do not grow): silent
    window = [_chat(f"w{i}", 300 + i * 20, 3, 820 - (i % 2) * 40) for i in range(6)]
    assert codes_and_ids([*clean_night(), *window]) == {}


def test_own_num_ctx_is_a_known_ceiling() -> None:
    cut = rec("cut", 400, prompt_eval_count=2048, opt_num_ctx=2048, prompt="word " * 4000)
    assert codes_and_ids([*clean_night(), cut]) == {"context_truncated": ["cut"]}
    fits = rec("fits", 400, prompt_eval_count=2048, opt_num_ctx=2048, prompt="word " * 1900)
    assert codes_and_ids([*clean_night(), fits]) == {}
    # with chats cut in the same model's traffic, their plateaued counts must not bend the tokens-per-character fit
    counts = [300, 560, 820, 1000, 760, 1010, 880]
    chats = [_chat(f"t{i}", 300 + i * 20, i, c) for i, c in enumerate(counts)]
    gens = [
        rec(f"g{i}", 500 + i, prompt_eval_count=256, opt_num_ctx=256, prompt="word " * w)
        for i, w in enumerate((300, 460))
    ]
    assert codes_and_ids([*chats, *gens]) == {"context_truncated": ["t4", "t5", "t6", "g0", "g1"]}


def test_parallelism_collapsed_needs_parallel_decoding_first() -> None:
    parallel = [_decoding(f"p{i}", 100 + (i // 2) * 10 + (i % 2) * 0.05, 60.0) for i in range(4)]
    # later, four requests arrive together and each begins only when the previous one finished
    serial = [
        _decoding(f"s{i}", 200 + i * 0.05, 100.0, ttft=80.0 + i * 2000.0 + (0 if i == 0 else 100.0)) for i in range(4)
    ]
    found = codes_and_ids([*parallel, *serial])
    assert found["parallelism_collapsed"] == ["s1", "s2", "s3"]
    assert found == {"parallelism_collapsed": ["s1", "s2", "s3"], "queueing": ["s1", "s2", "s3"]}
    # one slot from the start: ordinary queueing only
    sequential = [_decoding(f"q{i}", 100 + i * 10, 100.0) for i in range(4)]
    assert codes_and_ids([*sequential, *serial]) == {"queueing": ["s1", "s2", "s3"]}


def test_headline_hidden_wait_counts_only_real_waits() -> None:
    # every clean request has ~5 ms of templating in its hidden wait, none waited behind another
    assert analyze(clean_night()).headline["hidden_wait_ms"] == 0.0
    openai_only = [replace(r, api="openai", path="/v1/chat/completions") for r in clean_night()]
    assert analyze(openai_only).headline["hidden_wait_ms"] is None


def test_preloads_and_remote_models_are_no_cold_load() -> None:
    preload = rec("preload", 400, prompt="", eval_count=None, done_reason="load", load_duration_ms=3000.0)
    remote = rec(
        "cloud", 410, model="gpt-oss:120b-cloud", remote=True, load_duration_ms=3000.0, total_duration_ms=3600.0
    )
    assert codes_and_ids([*clean_night(), preload, remote]) == {}


BUSY = "server busy, please try again.  maximum pending requests exceeded"


@pytest.mark.parametrize(
    ("path", "status", "body", "category"),
    [
        (
            "/v1/messages",
            404,
            {"type": "error", "error": {"type": "not_found_error",
                                        "message": 'model "room:1b" not found, try pulling it first'}},
            "model_not_found",
        ),
        (
            "/v1/messages",
            503,
            {"type": "error", "error": {"type": "overloaded_error", "message": BUSY}},
            "server_busy",
        ),
        (
            "/v1/chat/completions",
            400,
            {"error": {"message": "the input length exceeds the context length", "type": "invalid_request_error"}},
            "context_exceeded",
        ),
    ],
)  # fmt: skip
def test_wrapped_errors_keep_ollamas_category(path: str, status: int, body: dict[str, object], category: str) -> None:
    """Anthropic's and OpenAI's error wrappers carry Ollama's own texts: the recorder unwraps them, the category
    follows the text's shape."""
    import json

    from analyzer.protocol.interaction import InteractionBuilder
    from analyzer.report.errors import error_category

    builder = InteractionBuilder(source="proxy", client="127.0.0.1:5000", server="127.0.0.1:11434")
    builder.request_started(1000.0, "POST", path, {"Content-Type": "application/json"})
    builder.request_body(json.dumps({"model": "room:1b", "messages": []}).encode(), 1000.0)
    builder.response_started(1000.05, status, {"Content-Type": "application/json"})
    builder.response_body(json.dumps(body).encode(), 1000.06)
    record = builder.finish(1000.07)
    assert error_category(record.status, record.error, record.flags) == category, record.error


def test_after_a_load_the_first_to_arrive_may_be_served_second() -> None:
    # both waited for the model's load; the later arrival got the slot, the first waited for it to finish
    first = rec("r0", 100.0, load_duration_ms=1500.0, ttft_ms=3000.0, total_ms=3600.0, total_duration_ms=3590.0)
    second = rec("r1", 100.02, load_duration_ms=1480.0, ttft_ms=1600.0, total_ms=2500.0, total_duration_ms=2490.0)
    assert codes_and_ids([*clean_night(), first, second]) == {"cold_load": ["r0", "r1"], "queueing": ["r0"]}
