"""One scripted session of the official clients against a server (real Ollama or the emulator), and what each
call received, with the client's own clock readings.

:data:`CALLS` covers what the issue lists: generate and chat (streamed and not), OpenAI chat/completions (with and
without ``stream_options.include_usage``), completions, embed (native and OpenAI), show/tags/ps/version, a JSON
schema ``format``, ``logprobs``, ``keep_alive``, ``options``, and the errors SmolLM2 answers for ``think`` and
``tools`` and a missing model. :func:`run_session` sends them in order (one at a time, so records come in the
same order) and returns one :class:`Received` per call.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import httpx
import ollama
import openai

from tests.real_ollama.conftest import CLIENT_TIMEOUT_S, SHORT

SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
TOOL = {
    "type": "function",
    "function": {"name": "weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}},
}
MISSING_MODEL = "nosuch-wire:latest"


def rfc3339(stamp: str) -> float:
    """Ollama's ``created_at`` (RFC 3339, nanoseconds) as epoch seconds (to the microsecond)."""
    head, _, rest = stamp.rstrip("Z").partition(".")
    frac = (rest + "000000")[:6]
    return datetime.fromisoformat(f"{head}.{frac}+00:00").timestamp()


@dataclass
class Piece:
    """One token-bearing stream object as the client got it: its text, the server's stamp (native), the client's."""

    text: str
    received_at: float
    created_at: float | None = None


@dataclass
class Received:
    """What one call sent and got."""

    name: str
    path: str
    api: str
    stream: bool
    word: str = ""
    sent_at: float = 0.0
    done_at: float = 0.0
    status: int = 200
    error: str | None = None
    text: str = ""
    pieces: list[Piece] = field(default_factory=list)
    chunks: int = 0  # stream objects (native lines / SSE data events without [DONE])
    final: dict[str, Any] = field(default_factory=dict)  # native final object, or the OpenAI usage
    done_reason: str | None = None


@dataclass
class Clients:
    url: str
    model: str

    def __post_init__(self) -> None:
        self.ollama = ollama.Client(host=self.url, timeout=CLIENT_TIMEOUT_S)
        self.openai = openai.OpenAI(
            base_url=self.url + "/v1", api_key="ollama", max_retries=0, timeout=CLIENT_TIMEOUT_S
        )
        self.http = httpx.Client(base_url=self.url, timeout=CLIENT_TIMEOUT_S, trust_env=False)


def _native_stream(r: Received, parts: Any, field_name: str) -> None:
    for part in parts:
        now = time.time()
        r.chunks += 1
        token = part.response if field_name == "response" else part.message.content
        if token:
            r.text += token
            r.pieces.append(Piece(token, now, rfc3339(part.created_at)))
        if part.done:
            r.final = part.model_dump(exclude_none=True)
            r.done_reason = part.done_reason


def _native_single(r: Received, part: Any, field_name: str) -> None:
    r.chunks = 1
    r.text = part.response if field_name == "response" else part.message.content
    r.final = part.model_dump(exclude_none=True)
    r.done_reason = part.done_reason


def _openai_stream(r: Received, events: Any, completion: bool) -> None:
    for event in events:
        now = time.time()
        r.chunks += 1
        if event.usage is not None:
            r.final = {"prompt_eval_count": event.usage.prompt_tokens, "eval_count": event.usage.completion_tokens}
        for choice in event.choices:
            token = choice.text if completion else choice.delta.content
            if token:
                r.text += token
                r.pieces.append(Piece(token, now))
            if choice.finish_reason:
                r.done_reason = choice.finish_reason


def _openai_single(r: Received, reply: Any, completion: bool) -> None:
    r.chunks = 1
    choice = reply.choices[0]
    r.text = choice.text if completion else choice.message.content
    r.done_reason = choice.finish_reason
    r.final = {"prompt_eval_count": reply.usage.prompt_tokens, "eval_count": reply.usage.completion_tokens}


def _user(word: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": f"Say the word {word}."}]


Call = Callable[[Clients, Received], None]


def gen_stream(c: Clients, r: Received) -> None:
    _native_stream(r, c.ollama.generate(model=c.model, prompt=f"Say {r.word}", options=SHORT, stream=True), "response")


def gen_single(c: Clients, r: Received) -> None:
    _native_single(r, c.ollama.generate(model=c.model, prompt=f"Say {r.word}", options=SHORT, stream=False), "response")


def chat_stream(c: Clients, r: Received) -> None:
    _native_stream(r, c.ollama.chat(model=c.model, messages=_user(r.word), options=SHORT, stream=True), "content")


def chat_single(c: Clients, r: Received) -> None:
    _native_single(r, c.ollama.chat(model=c.model, messages=_user(r.word), options=SHORT, stream=False), "content")


def _oai_chat(c: Clients, r: Received, stream: bool, usage: bool = False) -> Any:
    extra: dict[str, Any] = {"stream_options": {"include_usage": True}} if usage else {}
    return c.openai.chat.completions.create(
        model=c.model, messages=_user(r.word), max_tokens=SHORT["num_predict"], temperature=0, seed=7,
        stream=stream, **extra,
    )  # fmt: skip


def oai_chat_stream(c: Clients, r: Received) -> None:
    _openai_stream(r, _oai_chat(c, r, True), completion=False)


def oai_chat_stream_usage(c: Clients, r: Received) -> None:
    _openai_stream(r, _oai_chat(c, r, True, usage=True), completion=False)


def oai_chat_single(c: Clients, r: Received) -> None:
    _openai_single(r, _oai_chat(c, r, False), completion=False)


def _oai_completion(c: Clients, r: Received, stream: bool) -> Any:
    return c.openai.completions.create(
        model=c.model, prompt=f"Say {r.word}", max_tokens=SHORT["num_predict"], temperature=0, seed=7, stream=stream
    )


def oai_completion_stream(c: Clients, r: Received) -> None:
    _openai_stream(r, _oai_completion(c, r, True), completion=True)


def oai_completion_single(c: Clients, r: Received) -> None:
    _openai_single(r, _oai_completion(c, r, False), completion=True)


def embed(c: Clients, r: Received) -> None:
    reply = c.ollama.embed(model=c.model, input=f"embed {r.word}")
    r.chunks = 1
    r.final = reply.model_dump(exclude_none=True, exclude={"embeddings"})
    r.final["dimensions"] = len(reply.embeddings[0])


def oai_embed(c: Clients, r: Received) -> None:
    reply = c.openai.embeddings.create(model=c.model, input=f"embed {r.word}")
    r.chunks = 1
    r.final = {"prompt_eval_count": reply.usage.prompt_tokens, "dimensions": len(reply.data[0].embedding)}


def show(c: Clients, r: Received) -> None:
    c.ollama.show(c.model)
    r.chunks = 1


def tags(c: Clients, r: Received) -> None:
    c.ollama.list()
    r.chunks = 1


def ps(c: Clients, r: Received) -> None:
    c.ollama.ps()
    r.chunks = 1


def version(c: Clients, r: Received) -> None:
    reply = c.http.get("/api/version")
    r.status = reply.status_code
    r.chunks = 1


def format_schema(c: Clients, r: Received) -> None:
    reply = c.ollama.generate(
        model=c.model, prompt=f"City of {r.word}? JSON.", format=SCHEMA, options={**SHORT, "num_predict": 16},
        stream=False,
    )  # fmt: skip
    _native_single(r, reply, "response")


def logprobs(c: Clients, r: Received) -> None:
    parts = c.ollama.generate(
        model=c.model, prompt=f"Say {r.word}", options=SHORT, logprobs=True, top_logprobs=2, stream=True
    )
    _native_stream(r, parts, "response")


def keep_alive(c: Clients, r: Received) -> None:
    parts = c.ollama.generate(model=c.model, prompt=f"Say {r.word}", options=SHORT, keep_alive="2m", stream=True)
    _native_stream(r, parts, "response")


def options(c: Clients, r: Received) -> None:
    opts = {"num_predict": 6, "num_ctx": 2048, "temperature": 0.2, "seed": 42, "top_k": 20}
    _native_stream(r, c.ollama.chat(model=c.model, messages=_user(r.word), options=opts, stream=True), "content")


def _expect_error(r: Received, call: Callable[[], Any]) -> None:
    try:
        call()
    except ollama.ResponseError as exc:
        r.status, r.error = exc.status_code, exc.error
    else:
        raise AssertionError(f"{r.name}: expected an error reply")
    r.chunks = 1


def think(c: Clients, r: Received) -> None:
    _expect_error(r, lambda: list(c.ollama.chat(model=c.model, messages=_user(r.word), think=True, stream=True)))


def tools(c: Clients, r: Received) -> None:
    _expect_error(r, lambda: list(c.ollama.chat(model=c.model, messages=_user(r.word), tools=[TOOL], stream=True)))


def missing_model(c: Clients, r: Received) -> None:
    _expect_error(r, lambda: list(c.ollama.generate(model=MISSING_MODEL, prompt=f"Say {r.word}", stream=True)))


# name -> (call, path, api, stream)
CALLS: dict[str, tuple[Call, str, str, bool]] = {
    "gen_stream": (gen_stream, "/api/generate", "ollama", True),
    "gen_single": (gen_single, "/api/generate", "ollama", False),
    "chat_stream": (chat_stream, "/api/chat", "ollama", True),
    "chat_single": (chat_single, "/api/chat", "ollama", False),
    "oai_chat_stream": (oai_chat_stream, "/v1/chat/completions", "openai", True),
    "oai_chat_stream_usage": (oai_chat_stream_usage, "/v1/chat/completions", "openai", True),
    "oai_chat_single": (oai_chat_single, "/v1/chat/completions", "openai", False),
    "oai_completion_stream": (oai_completion_stream, "/v1/completions", "openai", True),
    "oai_completion_single": (oai_completion_single, "/v1/completions", "openai", False),
    "embed": (embed, "/api/embed", "ollama", False),
    "oai_embed": (oai_embed, "/v1/embeddings", "openai", False),
    "show": (show, "/api/show", "ollama", False),
    "tags": (tags, "/api/tags", "ollama", False),
    "ps": (ps, "/api/ps", "ollama", False),
    "version": (version, "/api/version", "ollama", False),
    "format_schema": (format_schema, "/api/generate", "ollama", False),
    "logprobs": (logprobs, "/api/generate", "ollama", True),
    "keep_alive": (keep_alive, "/api/generate", "ollama", True),
    "options": (options, "/api/chat", "ollama", True),
    "think": (think, "/api/chat", "ollama", True),
    "tools": (tools, "/api/chat", "ollama", True),
    "missing_model": (missing_model, "/api/generate", "ollama", True),
}
STREAMED = [name for name, (_, _, _, stream) in CALLS.items() if stream]


def run_session(url: str, model: str, names: list[str] | None = None) -> list[Received]:
    """Send the calls (all, or ``names``) one after another to ``url``; what each received."""
    clients = Clients(url, model)
    done: list[Received] = []
    for name in names or list(CALLS):
        call, path, api, stream = CALLS[name]
        r = Received(name, path, api, stream, word="w" + uuid.uuid4().hex[:8])
        r.sent_at = time.time()
        call(clients, r)
        r.done_at = time.time()
        done.append(r)
    return done
