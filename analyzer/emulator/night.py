"""A short night with problems, for the demo: the emulator settings and the client session that cause each one.

``NIGHT_CONFIG`` is a server that behaves like a busy single-GPU box: loading a model takes a while and one
request runs at a time per model (``OLLAMA_NUM_PARALLEL=1``). ``run_night(url, model)`` sends, with the official
``ollama`` and ``openai`` clients, the traffic that makes each problem real rather than faked:

1. the first request of the night finds the model unloaded and waits for it to load (``cold_load``);
2. a burst of chats to that ONE model at once: with one slot they queue, the wait hidden in ``total_duration``
   (``queueing``);
3. a clean OpenAI-compatible stream (what a healthy request looks like beside the others);
4. a chat that pastes a long log into a small ``num_ctx``, then asks follow-ups while the history grows: every
   prompt is longer than the request's context, so Ollama drops its start and ``prompt_eval_count`` is pinned
   at ``num_ctx`` (``context_truncated``);
5. a request for a model the server does not have (an error: ``model_not_found``).

Against a real Ollama (``ollama-wire demo --ollama URL``) the same session runs; what it finds then depends on
that server's settings. The session imports the clients lazily: the emulator itself needs neither.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from analyzer.emulator.config import EmulatorConfig

NIGHT_MODEL = "llama3.2:1b"
MISSING_MODEL = "llama3.2:3b-instruct"  # a plausible typo; neither the emulator nor a fresh server has it
LOAD_MS = 1500.0
BURST = 4  # chats sent at once to one model with one slot: three of them wait
SMALL_NUM_CTX = 128  # the long-document chat's context: its prompts need several times this
REPLY_LIMIT = 16  # num_predict / max_tokens: keeps a real model's answers short (the emulator's stop at 12 tokens)

NIGHT_CONFIG = EmulatorConfig(
    models=(NIGHT_MODEL,),
    tokens=12,
    prefill_ms=40.0,
    token_ms=40.0,
    load_ms=LOAD_MS,
    num_parallel=1,
)

# What the long-document chat pastes: a night of a service's log, about 700 words.
_SERVICES = ("api", "billing", "search", "worker-1", "worker-2", "scheduler")
_EVENTS = (
    "retry 2/5 after upstream timeout (30 s) on POST /v2/invoices",
    "connection pool exhausted, 64 of 64 in use, request queued",
    "slow query 4.8 s: SELECT * FROM orders WHERE status = 'pending'",
    "health check ok, p95 latency 212 ms, error rate 0.4 %",
    "certificate for internal.example expires in 6 days",
    "cache miss ratio 38 % over the last 5 minutes",
)
LONG_LOG = "\n".join(
    f"02:{minute:02d}:{(minute * 7) % 60:02d} {_SERVICES[minute % len(_SERVICES)]}: {_EVENTS[(minute * 5) % 6]}"
    for minute in range(60)
)


@dataclass(frozen=True)
class Step:
    """One thing the session did and what the client saw, for the demo's output."""

    what: str
    requests: int
    outcome: str


def run_night(url: str, model: str = NIGHT_MODEL, on_step: Callable[[Step], object] | None = None) -> list[Step]:
    """Send the night's traffic to the Ollama (or proxy) at ``url`` with the official clients; what each step saw.

    A client error of the staged error step is its expected outcome; any other client error propagates.
    """
    import ollama
    import openai  # noqa: F401 - loaded now (it takes seconds), not as an idle gap in the middle of the night

    steps: list[Step] = []

    def done(step: Step) -> None:
        steps.append(step)
        if on_step is not None:
            on_step(step)

    limit: dict[str, Any] = {"num_predict": REPLY_LIMIT}
    client = ollama.Client(host=url)
    text = "".join(
        part.response or ""
        for part in client.generate(model=model, prompt="Why is the sky blue?", stream=True, options=limit)
    )
    done(Step("ollama generate, first request of the night", 1, f"{len(text)} chars"))

    done(_burst(url, model, limit))
    done(_openai_chat(url, model))
    done(_long_document_chat(client, model))

    try:
        client.generate(model=MISSING_MODEL, prompt="Summarise the night.", options=limit)
        outcome = "answered (the server has this model)"
    except ollama.ResponseError as exc:
        outcome = f"error {exc.status_code}: {exc.error}"
    done(Step(f"ollama generate, model {MISSING_MODEL!r}", 1, outcome))
    return steps


def _burst(url: str, model: str, limit: dict[str, Any]) -> Step:
    """BURST chats to one model at the same moment, each from its own client (as separate users would)."""
    import ollama

    start = threading.Barrier(BURST)
    replies: list[str] = [""] * BURST
    failures: list[BaseException] = []

    def chat(index: int) -> None:
        try:
            client = ollama.Client(host=url)
            start.wait(timeout=10)
            question = f"User {index + 1}: give me one tip for writing clear commit messages."
            stream = client.chat(
                model=model, messages=[{"role": "user", "content": question}], stream=True, options=limit
            )
            replies[index] = "".join(part.message.content or "" for part in stream)
        except BaseException as exc:  # reported by the caller's thread
            failures.append(exc)

    threads = [threading.Thread(target=chat, args=(i,), name=f"demo-burst-{i}") for i in range(BURST)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    if failures:
        raise failures[0]
    sizes = ", ".join(str(len(reply)) for reply in replies)
    return Step(f"ollama chat ×{BURST} at once, one model", BURST, f"{BURST} replies ({sizes} chars)")


def _openai_chat(url: str, model: str) -> Step:
    import openai

    client = openai.OpenAI(base_url=url + "/v1", api_key="ollama")
    chunks = client.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": "Say hello in French."}],
        stream=True,
        stream_options={"include_usage": True},
        max_tokens=REPLY_LIMIT,
    )
    text = "".join((c.choices[0].delta.content or "") for c in chunks if c.choices)
    return Step("openai chat, streamed with usage", 1, f"{len(text)} chars")


def _long_document_chat(client: Any, model: str) -> Step:
    """A conversation over a pasted log in a context too small for it; the history grows each turn."""
    options = {"num_ctx": SMALL_NUM_CTX, "num_predict": REPLY_LIMIT}
    messages: list[dict[str, str]] = [
        {"role": "user", "content": f"Here is last night's log:\n{LONG_LOG}\n\nWhat went wrong first?"}
    ]
    follow_ups = [
        "And which service had the most retries? Quote its lines:\n" + "\n".join(LONG_LOG.splitlines()[:12]),
        "Write the incident summary for the morning meeting, with a timeline of these lines:\n"
        + "\n".join(LONG_LOG.splitlines()[12:30]),
    ]
    turns = 0
    for follow_up in [None, *follow_ups]:
        if follow_up is not None:
            messages.append({"role": "user", "content": follow_up})
        reply = client.chat(model=model, messages=messages, stream=True, options=options)
        messages.append({"role": "assistant", "content": "".join(part.message.content or "" for part in reply)})
        turns += 1
    words = sum(len(m["content"].split()) for m in messages[:-1])
    return Step(
        f"ollama chat ×{turns}, a long log in num_ctx {SMALL_NUM_CTX}",
        turns,
        f"{turns} replies; the last prompt held about {words} words (a new num_ctx reloads the model)",
    )
