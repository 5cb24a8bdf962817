"""Feeding a real InteractionBuilder the way the addon does, for the live-feed and dashboard tests."""

from __future__ import annotations

import json
import time

from analyzer.protocol.interaction import InteractionBuilder


def started_builder(
    record_id: str = "r1",
    *,
    model: str = "llama3.2:1b",
    prompt: str = "Why is the sky blue?",
    path: str = "/api/generate",
) -> InteractionBuilder:
    """A builder that has seen the request and the response headers, as the addon's ``_start`` leaves it."""
    now = time.time()
    builder = InteractionBuilder(
        source="proxy", client="127.0.0.1:40000", server="127.0.0.1:11434", record_id=record_id
    )
    builder.request_started(now, "POST", path, {"content-type": "application/json"})
    body = {"model": model, "prompt": prompt} if path != "/api/pull" else {"model": model}
    builder.request_body(json.dumps(body).encode(), now)
    builder.response_started(now, 200, {"content-type": "application/x-ndjson"})
    return builder


def token_line(text: str, *, done: bool = False) -> bytes:
    obj: dict = {"model": "llama3.2:1b", "created_at": "x", "response": text, "done": done}
    if done:
        obj.update(done_reason="stop", eval_count=3, eval_duration=10**8)
    return json.dumps(obj).encode() + b"\n"


def pull_line(completed: int, total: int = 4096) -> bytes:
    return (
        json.dumps({"status": "pulling abc", "digest": "sha256:abc", "total": total, "completed": completed}).encode()
        + b"\n"
    )
