"""What the builder keeps for replay (the request body, per redaction) and what a replay plan may send."""

from __future__ import annotations

import gzip
import json

import pytest

from analyzer.protocol.endpoints import classify
from analyzer.protocol.interaction import InteractionBuilder
from analyzer.protocol.record import FLAG_CAPTURE_STARTED_MID_REQUEST, InteractionRecord
from analyzer.protocol.redact import REDACT_DROP, REDACT_HASH, REDACT_IMAGES, REDACT_NONE, has_image_placeholder
from analyzer.replay.plan import (
    SKIP_IMAGES,
    SKIP_NO_BODY,
    SKIP_NOT_REPLAYABLE,
    SKIP_REDACTED,
    SKIP_REPLAY,
    build_plan,
    nothing_to_replay,
    parse_model_map,
    parse_options,
    replayable,
)
from analyzer.replay.run import Pace

BODY = json.dumps({"model": "m:1", "prompt": "hé 🦙", "options": {"seed": 1}}, ensure_ascii=False).encode()
IMAGE = "iVBORw0KGgo" + "B" * 100


def built(
    body: bytes,
    *,
    path: str = "/api/generate",
    headers: dict[str, str] | None = None,
    redaction: str = REDACT_IMAGES,
    pieces: int = 3,
    max_request_bytes: int = 1 << 20,
    flags: tuple[str, ...] = (),
) -> InteractionRecord:
    builder = InteractionBuilder(source="proxy", redaction=redaction, max_request_bytes=max_request_bytes)
    builder.request_started(1.0, "POST", path, headers or {"Content-Type": "application/json"})
    step = max(1, len(body) // pieces)
    for start in range(0, len(body), step):
        builder.request_body(body[start : start + step], 1.0)
    builder.add_flags(flags)
    builder.response_started(1.1, 200, {"Content-Type": "application/json"})
    builder.response_body(b'{"model":"m:1","response":"x","done":true}', 1.2)
    return builder.finish(1.2)


def test_the_body_is_kept_as_sent_whatever_the_fragmentation() -> None:
    for pieces in (1, 2, 7, len(BODY)):
        record = built(BODY, pieces=pieces)
        assert record.request_body == BODY.decode()
        assert record.request_content_type == "application/json"
        assert record.request_content_encoding is None


def test_a_gzip_body_is_kept_decoded_with_its_encoding_named() -> None:
    record = built(gzip.compress(BODY), headers={"Content-Type": "application/json", "Content-Encoding": "gzip"})
    assert record.request_body == BODY.decode()
    assert record.request_content_encoding == "gzip"


@pytest.mark.parametrize(
    ("change", "why"),
    [
        ({"max_request_bytes": 20}, "cut at the cap"),
        ({"headers": {"Content-Encoding": "br"}}, "an encoding we cannot undo"),
        ({"flags": (FLAG_CAPTURE_STARTED_MID_REQUEST,)}, "a capture that missed its start"),
    ],
)
def test_a_body_that_is_not_all_there_is_not_kept(change: dict[str, object], why: str) -> None:
    assert built(BODY, **change).request_body is None, why  # type: ignore[arg-type]


def test_redaction_decides_what_body_is_kept() -> None:
    chat = json.dumps({"model": "m:1", "messages": [{"role": "user", "content": "see", "images": [IMAGE]}]}).encode()
    assert built(chat, path="/api/chat", redaction=REDACT_NONE).request_body == chat.decode()
    kept = built(chat, path="/api/chat", redaction=REDACT_IMAGES).request_body or ""
    assert IMAGE not in kept and has_image_placeholder(kept)
    assert json.loads(kept)["messages"][0]["content"] == "see"
    plain = built(BODY, redaction=REDACT_IMAGES).request_body
    assert plain == BODY.decode()  # nothing to take out: the bytes as sent, not re-written
    openai = json.dumps(
        {
            "model": "m",
            "messages": [
                {
                    "role": "user",
                    "content": [{"type": "image_url", "image_url": {"url": "data:image/png;base64," + IMAGE}}],
                }
            ],
        }
    ).encode()
    assert has_image_placeholder(built(openai, path="/v1/chat/completions").request_body or "")
    for mode in (REDACT_HASH, REDACT_DROP):
        assert built(BODY, redaction=mode).request_body is None


def test_only_inference_and_read_only_requests_are_replayable() -> None:
    for path in (
        "/api/generate",
        "/api/chat",
        "/api/embed",
        "/api/embeddings",
        "/v1/chat/completions",
        "/v1/completions",
        "/v1/embeddings",
    ):
        endpoint = classify(path)
        assert endpoint is not None and replayable(endpoint.kind, "POST"), path
    for path in ("/api/pull", "/api/push", "/api/create", "/api/copy", "/api/delete", "/api/blobs/sha256:ab"):
        endpoint = classify(path)
        assert endpoint is not None
        assert not replayable(endpoint.kind, "POST") and not replayable(endpoint.kind, "DELETE"), path
    assert replayable("tags", "GET") and replayable("show", "POST") and not replayable("tags", "POST")
    assert replayable("messages", "POST") and replayable("responses", "POST")  # the kinds the newer APIs get
    assert replayable("load", "POST") and replayable("unload", "POST")  # empty-prompt generate/chat
    for kind in ("images", "transcription", "web_search", "web_fetch", "account", "recommendations"):
        assert not replayable(kind, "POST") and not replayable(kind, "GET"), kind
    assert not replayable("", "POST")


def record(n: int, **fields: object) -> InteractionRecord:
    base = {
        "id": f"r{n}",
        "source": "proxy",
        "started_at": f"2026-12-01T10:00:{n:02d}.000000Z",
        "method": "POST",
        "path": "/api/generate",
        "kind": "generate",
        "model": "m:1",
        "total_ms": 500.0,
        "request_body": '{"model":"m:1","prompt":"p"}',
    }
    return InteractionRecord(**{**base, **fields})  # type: ignore[arg-type]


def test_plan_offsets_skips_and_concurrency() -> None:
    records = [
        record(3),
        record(1),
        record(2, kind="pull", path="/api/pull"),
        record(4, request_body=None, flags=["redacted"]),
        record(5, request_body=None),
        record(6, request_body='{"model":"m:1","images":["<image 9 chars sha256:' + "0" * 64 + '>"]}'),
        record(7, source="replay"),
        record(8),
    ]
    plan = build_plan(records)
    assert [p.original_id for p in plan.requests] == ["r1", "r3", "r8"]
    assert [p.offset_s for p in plan.requests] == [0.0, 2.0, 7.0]
    assert plan.skipped == {SKIP_NOT_REPLAYABLE: 1, SKIP_REDACTED: 1, SKIP_NO_BODY: 1, SKIP_IMAGES: 1, SKIP_REPLAY: 1}
    assert plan.recorded_concurrency() == 1
    overlapping = build_plan([record(1, total_ms=5000.0), record(2, total_ms=5000.0), record(3)])
    assert overlapping.recorded_concurrency() == 3
    assert [p.original_id for p in build_plan(records, limit=2).requests] == ["r1", "r3"]
    assert len(build_plan(records, include_replays=True).requests) == 4


def test_model_map_rewrites_only_the_mapped_model() -> None:
    plan = build_plan(
        [record(1), record(2, model="other", request_body='{"model":"other","prompt":"q"}')],
        model_map=parse_model_map(["m:1=n:2"]),
    )
    assert json.loads(plan.requests[0].body) == {"model": "n:2", "prompt": "p"}
    assert plan.requests[0].model == "n:2"
    assert plan.requests[1].body == b'{"model":"other","prompt":"q"}'
    with pytest.raises(ValueError, match="OLD=NEW"):
        parse_model_map(["nothing"])


def test_a_redacted_log_is_one_line_naming_the_option() -> None:
    plan = build_plan([record(1, request_body=None, flags=["redacted"])])
    message = nothing_to_replay(plan, ["logs/x"])
    assert "\n" not in message and "ollama_redact" in message and message.startswith("logs/x: cannot replay")


def test_options_are_set_where_each_api_reads_them() -> None:
    native = record(1, request_body='{"model":"m:1","prompt":"p","options":{"seed":1}}')
    openai = record(2, path="/v1/chat/completions", kind="chat", request_body='{"model":"m:1","messages":[]}')
    pull = record(3, path="/api/pull", kind="pull")
    settings = parse_options(["num_ctx=8192", "num_predict=64", 'keep_alive="30m"', "think=low"])
    plan = build_plan([native, openai, pull], options=settings)
    assert json.loads(plan.requests[0].body) == {
        "model": "m:1", "prompt": "p", "keep_alive": "30m", "think": "low",
        "options": {"seed": 1, "num_ctx": 8192, "num_predict": 64},
    }  # fmt: skip
    assert json.loads(plan.requests[1].body) == {
        "model": "m:1", "messages": [], "num_ctx": 8192, "max_tokens": 64, "keep_alive": "30m", "think": "low"
    }  # fmt: skip
    assert len(plan.requests) == 2  # the pull is never sent, options or not
    with pytest.raises(ValueError, match="NAME=VALUE"):
        parse_options(["=3"])


def test_pace_scales_offsets_and_caps_concurrency() -> None:
    plan = build_plan([record(0, total_ms=3000.0), record(2, total_ms=3000.0), record(4, total_ms=500.0)])
    first, second, third = plan.requests
    assert Pace(speed=1.0).offset(third) == 4.0 and Pace(speed=2.0).offset(third) == 2.0
    assert Pace(speed=None).offset(third) == 0.0
    assert Pace(speed=1.0).cap(plan) is None  # as recorded: no cap, requests overlap as they did
    assert Pace(speed=None).cap(plan) == 2  # max: the recording's own peak (0-3 s and 2-5 s overlap)
    assert Pace(speed=None, concurrency=1).cap(plan) == 1
    assert Pace(speed=2.0).duration_s(plan) == 4.0  # the second starts at 1 s and takes its recorded 3 s
    assert Pace(speed=None, concurrency=2).duration_s(plan) == 3.25  # 6.5 s of requests over 2 at once
