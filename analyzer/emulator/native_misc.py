"""The native endpoints that do not generate text: model listing, show, embeddings, pull/push/create."""

from __future__ import annotations

import asyncio
import hashlib
import time
from typing import Any

from analyzer.emulator import text
from analyzer.emulator.http11 import Request, ResponseWriter
from analyzer.emulator.native_generate import check_model
from analyzer.emulator.plan import PlanError, keep_alive_s
from analyzer.emulator.replies import NDJSON_TYPE, RequestFailed, parse_body, send_json
from analyzer.emulator.state import ServerState
from analyzer.emulator.wire import go_json, rfc3339_nano

MODIFIED_AT = "2024-08-01T12:00:00.123456789Z"
LAYER_BYTES = 4 * 1024 * 1024
PROGRESS_STEPS = 4


def digest(name: str) -> str:
    """A stable fake sha256 digest for a model name."""
    return hashlib.sha256(name.encode()).hexdigest()


def details(name: str) -> dict[str, Any]:
    """Ollama's ``details`` block for a model."""
    family = name.split(":", 1)[0].rstrip("0123456789.") or "llama"
    size = name.split(":", 1)[1].upper() if ":" in name else "1B"
    return {
        "parent_model": "",
        "format": "gguf",
        "family": family,
        "families": [family],
        "parameter_size": size,
        "quantization_level": "Q4_K_M",
    }


async def root(state: ServerState, request: Request, response: ResponseWriter) -> None:
    """``GET /`` and ``HEAD /``."""
    await response.send(200, "text/plain; charset=utf-8", b"Ollama is running")


async def version(state: ServerState, request: Request, response: ResponseWriter) -> None:
    """``GET /api/version``."""
    await send_json(response, {"version": state.config.version})


async def tags(state: ServerState, request: Request, response: ResponseWriter) -> None:
    """``GET /api/tags``: every model that exists."""
    models = [
        {
            "name": name,
            "model": name,
            "modified_at": MODIFIED_AT,
            "size": LAYER_BYTES,
            "digest": digest(name),
            "details": details(name),
        }
        for name in state.models
    ]
    await send_json(response, {"models": models})


async def ps(state: ServerState, request: Request, response: ResponseWriter) -> None:
    """``GET /api/ps``: the models the scheduler holds (loading or loaded), latest expiry first."""
    now = time.time()
    models = [
        {
            "name": runner.model,
            "model": runner.model,
            "size": runner.size,
            "digest": digest(runner.model),
            "details": details(runner.model),
            "expires_at": rfc3339_nano(runner.expires_at_ns(now)),
            "size_vram": runner.size_vram,
            "context_length": runner.num_ctx,
        }
        for runner in state.scheduler.loaded()
    ]
    await send_json(response, {"models": models})


async def show(state: ServerState, request: Request, response: ResponseWriter) -> None:
    """``POST /api/show``."""
    body = parse_body(request.body)
    if not body.get("model") and body.get("name"):
        body["model"] = body["name"]
    name = state.resolve(check_model(state, body)) or ""
    profile = state.config.profile(name)
    capabilities = ["completion"] + ["tools"] * profile.tools + ["thinking"] * profile.thinking
    await send_json(
        response,
        {
            "modelfile": f"FROM {name}\n",
            "parameters": 'stop                           "<|eot_id|>"',
            "template": "{{ .Prompt }}",
            "details": details(name),
            "model_info": {"general.architecture": details(name)["family"], "general.parameter_count": 1_000_000},
            "capabilities": capabilities,
            "modified_at": MODIFIED_AT,
            "tensors": [{"name": "token_embd.weight", "type": "Q4_1", "shape": [2048, 32000]}],
        },
    )


def _inputs(body: dict[str, Any], key: str) -> list[str]:
    value = body.get(key, "")
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return list(value)
    raise RequestFailed(400, f"invalid {key} type")


async def embed(state: ServerState, request: Request, response: ResponseWriter) -> None:
    """``POST /api/embed``: ``embeddings`` (one vector per input); schedules (loads) the model first."""
    started = time.monotonic_ns()
    body = parse_body(request.body)
    model = check_model(state, body)
    inputs = _inputs(body, "input")
    try:
        keep_alive = keep_alive_s(body)
    except PlanError as exc:
        raise RequestFailed(400, str(exc)) from None
    options = body.get("options")
    num_ctx = options.get("num_ctx") if isinstance(options, dict) else None
    if not isinstance(num_ctx, int) or isinstance(num_ctx, bool):
        num_ctx = state.config.num_ctx
    async with state.schedule(model, keep_alive, num_ctx):  # loads the model like a generation does
        loaded = time.monotonic_ns()
        vectors = [text.embedding(model, item) for item in inputs]
    await send_json(
        response,
        {
            "model": model,
            "embeddings": vectors,
            "total_duration": max(1, time.monotonic_ns() - started),
            "load_duration": max(1, loaded - started),
            "prompt_eval_count": sum(text.prompt_token_count(i) for i in inputs),
        },
    )


async def embeddings(state: ServerState, request: Request, response: ResponseWriter) -> None:
    """``POST /api/embeddings`` (legacy): one ``embedding`` for ``prompt``."""
    body = parse_body(request.body)
    model = check_model(state, body)
    await send_json(response, {"embedding": text.embedding(model, str(body.get("prompt", "")))})


def _progress(action: str, name: str) -> list[dict[str, Any]]:
    layer = "sha256:" + digest(name)
    first = {"pull": "pulling manifest", "push": "retrieving manifest", "create": "parsing modelfile"}[action]
    verb = {"pull": "pulling", "push": "pushing", "create": "copying"}[action]
    steps: list[dict[str, Any]] = [{"status": first}]
    for step in range(PROGRESS_STEPS + 1):
        steps.append(
            {
                "status": f"{verb} {layer[7:19]}",
                "digest": layer,
                "total": LAYER_BYTES,
                "completed": LAYER_BYTES * step // PROGRESS_STEPS,
            }
        )
    tail = {"pull": ["verifying sha256 digest", "writing manifest"], "push": ["pushing manifest"]}
    steps += [{"status": status} for status in tail.get(action, ["writing manifest"])]
    steps.append({"status": "success"})
    return steps


async def _transfer(action: str, state: ServerState, request: Request, response: ResponseWriter) -> None:
    body = parse_body(request.body)
    name = body.get("model") or body.get("name")
    if not name or not isinstance(name, str):
        raise RequestFailed(400, "model is required")
    if action == "push" and state.resolve(name) is None:
        raise RequestFailed(404, f"model '{name}' not found")
    steps = _progress(action, name)
    if action != "push":
        state.add_model(name)
    if body.get("stream", True) is False:
        await send_json(response, steps[-1])
        return
    response.start_stream(200, NDJSON_TYPE)
    for index, step in enumerate(steps):
        if index and state.config.pull_step_ms > 0:
            await asyncio.sleep(state.config.pull_step_ms / 1000)
        await response.write_chunk(go_json(step) + b"\n")
    await response.end_stream()


async def pull(state: ServerState, request: Request, response: ResponseWriter) -> None:
    """``POST /api/pull``: progress stream; afterwards the model exists."""
    await _transfer("pull", state, request, response)


async def push(state: ServerState, request: Request, response: ResponseWriter) -> None:
    """``POST /api/push``: progress stream for an existing model."""
    await _transfer("push", state, request, response)


async def create(state: ServerState, request: Request, response: ResponseWriter) -> None:
    """``POST /api/create``: progress stream; afterwards the model exists."""
    await _transfer("create", state, request, response)
