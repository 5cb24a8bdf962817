"""Item 5: the emulator measured against the real thing.

One scripted session (:data:`SCRIPT`: every endpoint the recorder knows, errors, cut-offs, load/unload) goes byte
for byte (``rawhttp``) to a real Ollama v0.24.0 and to the emulator serving the same model names; each reply is
reduced to its **shape** — status, Content-Type, header names in order, chunked or not, which stream objects /
SSE events each chunk holds, every object's keys and value types, ``done_reason``, the error body — never sizes,
timings or text. Differences that cannot match (listed in docs/emulator.md) are normalised in :func:`shape`
before comparing; everything else must be equal.

The same session also goes through mitmdump with the official clients to both servers (``test_records_have_the
_same_shape``): the records must have the same columns present, the same types, flags, status and done_reason.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from analyzer.emulator import EmulatorConfig, EmulatorThread
from analyzer.protocol.record import InteractionRecord
from tests.real_ollama.conftest import wait_for_count
from tests.real_ollama.session import CALLS, MISSING_MODEL, SCHEMA, TOOL, run_session
from tests.support.processes import Mitmdump
from tests.support.rawhttp import RawResponse, raw_exchange
from tests.support.real_ollama import MODEL, MODELS, RealOllama

pytestmark = [pytest.mark.real_ollama, pytest.mark.timeout(600)]

CUT = {"num_predict": 4, "temperature": 0, "seed": 7}
COUNT = "Count from one to twenty:"
USER = [{"role": "user", "content": COUNT}]

# name -> (method, path, body). Bodies use the real model's name: the emulator serves the same names.
SCRIPT: dict[str, tuple[str, str, Any]] = {
    "root": ("GET", "/", None),
    "version": ("GET", "/api/version", None),
    "tags": ("GET", "/api/tags", None),
    "show": ("POST", "/api/show", {"model": MODEL}),
    "load": ("POST", "/api/generate", {"model": MODEL}),
    "ps": ("GET", "/api/ps", None),
    "generate_stream": ("POST", "/api/generate", {"model": MODEL, "prompt": COUNT, "options": CUT}),
    "generate_single": ("POST", "/api/generate", {"model": MODEL, "prompt": COUNT, "options": CUT, "stream": False}),
    "chat_stream": ("POST", "/api/chat", {"model": MODEL, "messages": USER, "options": CUT}),
    "chat_single": ("POST", "/api/chat", {"model": MODEL, "messages": USER, "options": CUT, "stream": False}),
    "format_schema": (
        "POST", "/api/generate", {"model": MODEL, "prompt": COUNT, "format": SCHEMA, "options": CUT, "stream": False}
    ),
    "logprobs": ("POST", "/api/generate", {"model": MODEL, "prompt": COUNT, "options": CUT, "logprobs": True}),
    "embed": ("POST", "/api/embed", {"model": MODEL, "input": "hello"}),
    "embeddings": ("POST", "/api/embeddings", {"model": MODEL, "prompt": "hello"}),
    "think": ("POST", "/api/chat", {"model": MODEL, "messages": USER, "think": True}),
    "tools": ("POST", "/api/chat", {"model": MODEL, "messages": USER, "tools": [TOOL]}),
    "missing_model": ("POST", "/api/generate", {"model": MISSING_MODEL, "prompt": "hi"}),
    "missing_model_chat": ("POST", "/api/chat", {"model": MISSING_MODEL, "messages": USER}),
    "no_model": ("POST", "/api/generate", {"prompt": "hi"}),
    "bad_json": ("POST", "/api/generate", b"{not json"),
    "bad_keep_alive": ("POST", "/api/generate", {"model": MODEL, "prompt": "hi", "keep_alive": "300"}),
    "context_exceeded": (
        "POST", "/api/generate",
        {"model": MODEL, "prompt": "word " * 600, "truncate": False, "options": {"num_ctx": 256, "num_predict": 2}},
    ),
    "context_exceeded_single": (
        "POST", "/api/generate",
        {"model": MODEL, "prompt": "word " * 600, "truncate": False, "stream": False,
         "options": {"num_ctx": 256, "num_predict": 2}},
    ),
    "context_exceeded_chat": (
        "POST", "/api/chat",
        {"model": MODEL, "messages": [{"role": "user", "content": "word " * 600}], "truncate": False,
         "options": {"num_ctx": 256, "num_predict": 2}},
    ),
    "unknown_path": ("GET", "/api/nope", None),
    "oai_chat_stream": (
        "POST", "/v1/chat/completions", {"model": MODEL, "messages": USER, "max_tokens": 4, "stream": True}
    ),
    "oai_chat_stream_usage": (
        "POST", "/v1/chat/completions",
        {"model": MODEL, "messages": USER, "max_tokens": 4, "stream": True, "stream_options": {"include_usage": True}},
    ),
    "oai_chat_single": ("POST", "/v1/chat/completions", {"model": MODEL, "messages": USER, "max_tokens": 4}),
    "oai_completion_stream": (
        "POST", "/v1/completions", {"model": MODEL, "prompt": COUNT, "max_tokens": 4, "stream": True}
    ),
    "oai_completion_single": ("POST", "/v1/completions", {"model": MODEL, "prompt": COUNT, "max_tokens": 4}),
    "oai_embeddings": ("POST", "/v1/embeddings", {"model": MODEL, "input": "hello"}),
    "oai_models": ("GET", "/v1/models", None),
    "oai_model": ("GET", f"/v1/models/{MODEL}", None),
    "oai_missing_model": ("POST", "/v1/chat/completions", {"model": MISSING_MODEL, "messages": USER}),
    "unload": ("POST", "/api/generate", {"model": MODEL, "keep_alive": 0}),
}  # fmt: skip

# Keys whose values are data, not shape: compared as "present, of this type" only one level deep.
OPAQUE = {"context", "embeddings", "embedding", "details", "model_info", "tensors", "capabilities", "logprobs",
          "modified_at", "expires_at", "parameters", "template", "license", "modelfile", "system", "data"}  # fmt: skip


def type_shape(value: Any, depth: int = 0) -> Any:
    """Keys and JSON types, recursively (lists: the shape of their first element)."""
    if isinstance(value, dict):
        return {k: (type(v).__name__ if k in OPAQUE else type_shape(v, depth + 1)) for k, v in sorted(value.items())}
    if isinstance(value, list):
        return [type_shape(value[0], depth + 1)] if value else []
    if isinstance(value, bool) or value is None:
        return repr(value)
    return type(value).__name__


def _objects(chunk: bytes, sse: bool) -> list[Any]:
    if sse:
        events = [e for e in chunk.split(b"\n\n") if e.strip()]
        return ["[DONE]" if e == b"data: [DONE]" else json.loads(e.removeprefix(b"data: ")) for e in events]
    return [json.loads(line) for line in chunk.splitlines() if line.strip()]


FRAMING = "Content-Length|Transfer-Encoding"


def shape(name: str, reply: RawResponse) -> dict[str, Any]:
    """What must match between real and emulated replies."""
    content_type = reply.headers.get("content-type", "")
    sse = "event-stream" in content_type
    streamed = sse or "ndjson" in content_type
    names = [n for n in reply.header_names if n.lower() != "connection"]
    out: dict[str, Any] = {"status": reply.status, "content_type": content_type, "header_names": names}
    if streamed or reply.status >= 400:
        out["chunked"] = reply.chunked
    else:  # Go: Content-Length up to 2048 bytes, else chunked — a matter of size (embedding dimensions, tensors)
        out["header_names"] = [FRAMING if n in ("Content-Length", "Transfer-Encoding") else n for n in names]
    if "ndjson" in content_type or sse:
        per_chunk = [_objects(c, sse) for c in reply.chunks]
        # Streams: how many objects each chunk holds (one each; the SSE end together), the distinct object shapes
        # in order of first appearance, and the last object (done_reason / finish_reason).
        out["objects_per_chunk"] = [*sorted({len(objs) for objs in per_chunk[:-1]}), len(per_chunk[-1])]
        shapes: list[Any] = []
        for objs in per_chunk:
            for obj in objs:
                s = type_shape(obj)
                if s not in shapes:
                    shapes.append(s)
        out["object_shapes"] = shapes
        last = [o for objs in per_chunk for o in objs if o != "[DONE]"][-1]
        out["end"] = last.get("done_reason") if not sse else [c.get("finish_reason") for c in last.get("choices", [])]
    elif "json" in content_type:
        body = reply.json()
        out["body_shape"] = type_shape(body)
        out["newline_after_body"] = reply.body.endswith(b"\n")
        if reply.status >= 400:
            out["error_body"] = body
            if name == "bad_json":  # Go's encoding/json texts vs Python's json: the same 400, other words
                out["error_body"] = type_shape(body)
        elif isinstance(body, dict) and "done_reason" in body:
            out["end"] = body["done_reason"]
    else:
        out["body"] = reply.body
    return out


def run_script(address: tuple[str, int]) -> dict[str, dict[str, Any]]:
    return {
        name: shape(name, raw_exchange(address, method, path, body)) for name, (method, path, body) in SCRIPT.items()
    }


def emulator_config() -> EmulatorConfig:
    """The emulator as a stand-in for SmolLM2: same names, a template without thinking or tools."""
    smollm2 = {"thinking": False, "tools": False}
    return EmulatorConfig(models=MODELS, prefill_ms=2.0, token_ms=1.0, profiles=dict.fromkeys(MODELS, smollm2))


@pytest.fixture(scope="module")
def both(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, dict[str, dict[str, Any]]]]:
    from tests.conftest import real_ollama_unavailable

    reason = real_ollama_unavailable()
    if reason:
        pytest.skip(reason)
    with RealOllama(tmp_path_factory.mktemp("diff-real")) as real:
        real_shapes = run_script((real.host, real.port))
    with EmulatorThread(emulator_config()) as emu:
        emulated_shapes = run_script((emu.host, emu.port))
    yield {"real": real_shapes, "emulator": emulated_shapes}


@pytest.mark.parametrize("name", list(SCRIPT))
def test_emulator_reply_has_the_real_shape(both: dict[str, dict[str, dict[str, Any]]], name: str) -> None:
    real, emulated = both["real"][name], both["emulator"][name]
    differences = {k: {"emulator": emulated.get(k), "real": real.get(k)} for k in real.keys() | emulated.keys()
                   if emulated.get(k) != real.get(k)}  # fmt: skip
    assert differences == {}, name


# --------------------------------------------------------------------------------------------- records, by proxy

RECORD_SKIP = {"id", "started_at", "client", "server"}


def record_shape(record: InteractionRecord) -> dict[str, Any]:
    """Which columns are present (not None) and their types; plus the values that are shape, not content."""
    out: dict[str, Any] = {}
    for key, value in record.to_dict().items():
        if key in RECORD_SKIP:
            continue
        out[key] = type(value).__name__ if value not in (None, "", []) else repr(value)
    for key in ("status", "done_reason", "flags", "complete", "stream", "kind", "api", "path", "error"):
        out[key] = getattr(record, key)
    # A real model may end on its own before num_predict (a JSON object closed early): `stop` vs the emulator's
    # `length` is content, not shape. The raw-reply test above pins done_reason with a cut-off both must hit.
    if out["done_reason"] in ("stop", "length"):
        out["done_reason"] = "stop|length"
    return out


def _records_via_proxy(url: str, base: Path) -> list[InteractionRecord]:
    base.mkdir(parents=True)
    with Mitmdump(url, "127.0.0.1", base / "log", base / "console.txt") as proxy:
        run_session(proxy.url, MODEL)
        return wait_for_count(proxy, len(CALLS), by_start=False)  # one call after another


@pytest.fixture(scope="module")
def both_records(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[InteractionRecord]]:
    from tests.conftest import real_ollama_unavailable

    reason = real_ollama_unavailable()
    if reason:
        pytest.skip(reason)
    base = tmp_path_factory.mktemp("diff-records")
    with RealOllama(base / "real") as real:
        real_records = _records_via_proxy(real.url, base / "proxy-real")
    with EmulatorThread(emulator_config()) as emu:
        emulated_records = _records_via_proxy(emu.url, base / "proxy-emu")
    return {"real": real_records, "emulator": emulated_records}


@pytest.mark.parametrize("index", range(len(CALLS)), ids=list(CALLS))
def test_records_have_the_same_shape(both_records: dict[str, list[InteractionRecord]], index: int) -> None:
    real = record_shape(both_records["real"][index])
    emulated = record_shape(both_records["emulator"][index])
    differences = {k: {"emulator": emulated.get(k), "real": real.get(k)} for k in real.keys() | emulated.keys()
                   if emulated.get(k) != real.get(k)}  # fmt: skip
    assert differences == {}, list(CALLS)[index]
