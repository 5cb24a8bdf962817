"""Keyword-built workloads: the official ``ollama`` and ``openai`` clients against an emulator (or a proxy in
front of it), and what each client received.

A workload is a list of :class:`Step` built with keywords, e.g.
``[step("gen-stream", tokens=120), step("chat", kind="chat", think=True, tools=True),
step("oai", client="openai", kind="chat", usage=True)]``. :func:`run_workload` sends them in order, each
client on one keep-alive connection, and returns a :class:`Sent` per step: the unique prompt, what the
client received, and what the emulator planned to send (``analyzer.emulator.plan_reply``).
:func:`capture_workload` runs a workload while tcpdump captures it (needs root).
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import ollama
import openai

from analyzer.emulator import EmulatorConfig, EmulatorThread, plan_reply
from analyzer.emulator.examples import WEATHER_TOOL
from analyzer.protocol.record import FLAG_CLIENT_ABORTED, FLAG_ERROR_MID_STREAM
from tests.support.defaults import CLIENT_TIMEOUT_S, FAST, MISSING_MODEL, MODEL
from tests.support.processes import Mitmdump
from tests.support.tcpdump import CaptureFailed, TcpdumpRun, tcpdump

# A long enough stream that a dropped segment or a capture window can land in its middle.
LONG_STREAM_TOKENS = 60
# A non-streamed body above Go's 2048-byte buffer: sent chunked although it is one JSON object.
BIG_BODY_TOKENS = 600
ERROR_AFTER = 5


@dataclass(frozen=True)
class Step:
    """One request of a workload, described by keywords."""

    name: str  # stable label (also the start of the unique prompt)
    client: str = "ollama"  # "ollama" or "openai": which official client sends it
    kind: str = "generate"  # "generate" or "chat"
    stream: bool = True
    tokens: int | None = None  # the emulator's reply length (``emulator_tokens``)
    think: bool = False
    tools: bool = False
    model: str = MODEL
    error_after: int | None = None  # the emulator fails the stream after this many tokens
    usage: bool = False  # OpenAI ``stream_options.include_usage``


def step(name: str, **keywords: Any) -> Step:
    return Step(name, **keywords)


# The full workload the analyzer's capture tests expect (see tests/analyzer/pcap/test_analyze.py).
FULL: tuple[Step, ...] = (
    step("gen-stream", tokens=LONG_STREAM_TOKENS),
    step("gen-big", stream=False, tokens=BIG_BODY_TOKENS),
    step("chat-think-tools", kind="chat", think=True, tools=True),
    step("missing-model", model=MISSING_MODEL, stream=False),
    step("error-mid-stream", error_after=ERROR_AFTER),
    step("openai-chat-stream", client="openai", kind="chat", usage=True),
    step("openai-completion", client="openai", stream=False),
)


@dataclass
class Sent:
    """One request of the workload and what its client received."""

    name: str
    prompt: str
    api: str
    kind: str
    model: str
    status: int
    stream: bool
    text: str = ""
    thinking: str = ""
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    done_reason: str | None = None
    complete: bool = True
    flags: tuple[str, ...] = ()
    error: str | None = None
    eval_count: int | None = None
    prompt_eval_count: int | None = None
    native_counters: bool = False  # Ollama's nanosecond durations expected
    tokens: tuple[str, ...] = ()  # the reply's tokens, as the emulator planned them
    connection: str = ""  # which client connection carried it ("ollama" / "openai")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def flags_match(self, flags: Sequence[str]) -> bool:
        """Whether a record's flags are the expected ones. After an error mid-stream the client hangs up at once, and
        whether that reaches the wire before the server's last chunk is a race: ``client_aborted`` may come too
        (seen about once in six through-proxy captures)."""
        if list(flags) == list(self.flags):
            return True
        return FLAG_ERROR_MID_STREAM in self.flags and sorted(flags) == sorted([*self.flags, FLAG_CLIENT_ABORTED])

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Sent:
        return cls(**{**data, "flags": tuple(data["flags"]), "tokens": tuple(data["tokens"])})


@dataclass
class RealCapture:
    """A capture file, the Ollama port to analyze, and what every request sent during it got."""

    path: Path
    port: int
    sent: list[Sent]
    host: str = "127.0.0.1"

    def by_name(self, name: str) -> Sent:
        return next(s for s in self.sent if s.name == name)


def _prompt(name: str) -> str:
    return f"{name} {uuid.uuid4().hex[:10]}"


def _body(s: Step, prompt: str) -> dict[str, Any]:
    """The request body as the client sends it (what ``plan_reply`` plans from)."""
    body: dict[str, Any] = {"model": s.model}
    if s.kind == "chat":
        body["messages"] = [{"role": "user", "content": prompt}]
    else:
        body["prompt"] = prompt
    options = {"emulator_tokens": s.tokens, "emulator_error_after": s.error_after}
    options = {k: v for k, v in options.items() if v is not None}
    if options:
        body["options"] = options
    if s.think:
        body["think"] = True
    if s.tools:
        body["tools"] = [WEATHER_TOOL]
    return body


def _ollama(client: ollama.Client, s: Step, config: EmulatorConfig) -> Sent:
    prompt = _prompt(s.name)
    body = _body(s, prompt)
    kwargs: dict[str, Any] = {"model": s.model, "stream": s.stream, "options": body.get("options")}
    if s.think:
        kwargs["think"] = True
    if s.tools:
        kwargs["tools"] = [WEATHER_TOOL]
    sent = Sent(s.name, prompt, "ollama", s.kind, s.model, 200, s.stream, connection="ollama")
    text: list[str] = []
    thinking: list[str] = []
    last: Any = None
    try:
        if s.kind == "chat":
            replies = client.chat(messages=body["messages"], **kwargs)
        else:
            replies = client.generate(prompt=prompt, **kwargs)
        for reply in replies if s.stream else [replies]:
            part = reply.message if s.kind == "chat" else reply
            text.append((part.content if s.kind == "chat" else part.response) or "")
            thinking.append(part.thinking or "")
            for call in getattr(part, "tool_calls", None) or []:
                sent.tool_calls.append({"name": call.function.name, "arguments": dict(call.function.arguments)})
            last = reply
    except ollama.ResponseError as exc:
        sent.error = exc.error
        if exc.status_code != -1:  # an HTTP error status: the server refused before any reply
            sent.status = exc.status_code
            return sent
        sent.complete, sent.flags = False, (FLAG_ERROR_MID_STREAM,)
    sent.text, sent.thinking = "".join(text), "".join(thinking)
    plan = plan_reply("chat" if s.kind == "chat" else "generate", body, config)
    sent.tokens = plan.content[: s.error_after] if s.error_after else plan.content
    if last is not None and last.done:
        sent.done_reason, sent.native_counters = last.done_reason, True
        sent.eval_count, sent.prompt_eval_count = last.eval_count, last.prompt_eval_count
    return sent


def _openai(client: openai.OpenAI, s: Step, config: EmulatorConfig) -> Sent:
    prompt = _prompt(s.name)
    body = _body(s, prompt)
    sent = Sent(s.name, prompt, "openai", s.kind, s.model, 200, s.stream, connection="openai")
    usage: Any = None
    if s.kind == "chat":
        extra: dict[str, Any] = {"stream_options": {"include_usage": True}} if s.usage else {}
        parts: list[str] = []
        finish = None
        if s.stream:
            for chunk in client.chat.completions.create(model=s.model, messages=body["messages"], stream=True, **extra):
                usage = chunk.usage or usage
                for choice in chunk.choices:
                    parts.append(choice.delta.content or "")
                    finish = choice.finish_reason or finish
        else:
            reply = client.chat.completions.create(model=s.model, messages=body["messages"])
            parts, finish, usage = [reply.choices[0].message.content or ""], reply.choices[0].finish_reason, reply.usage
        sent.text, sent.done_reason = "".join(parts), finish
        plan = plan_reply("openai_chat", body, config)
    else:
        completion = client.completions.create(model=s.model, prompt=prompt)
        sent.text, sent.done_reason, usage = (
            completion.choices[0].text,
            completion.choices[0].finish_reason,
            completion.usage,
        )
        plan = plan_reply("openai_completion", body, config)
    if usage is not None:
        sent.eval_count, sent.prompt_eval_count = usage.completion_tokens, usage.prompt_tokens
    sent.tokens = plan.content
    return sent


def run_workload(
    url: str, config: EmulatorConfig, steps: Sequence[Step] = FULL, ollama_options: dict[str, Any] | None = None
) -> list[Sent]:
    """Send ``steps`` in order through the official clients (one keep-alive connection per client);
    ``ollama_options`` go to ``ollama.Client`` (e.g. ``verify=False`` for a test HTTPS front)."""
    native = ollama.Client(host=url, timeout=CLIENT_TIMEOUT_S, **(ollama_options or {}))
    compat = openai.OpenAI(base_url=url + "/v1", api_key="ollama", max_retries=0, timeout=CLIENT_TIMEOUT_S)
    try:
        return [_ollama(native, s, config) if s.client == "ollama" else _openai(compat, s, config) for s in steps]
    finally:
        native._client.close()
        compat.close()


# --------------------------------------------------------------------------- captured workloads (root)


@dataclass
class Workload:
    """One run of a workload with every capture made of it."""

    port: int
    host: str
    sent: list[Sent]
    files: dict[str, Path]

    def capture(self, name: str) -> RealCapture:
        return RealCapture(self.files[name], self.port, self.sent, self.host)


CAPTURE_ATTEMPTS = 3


def capture_workload(
    base: Path, host: str, ifaces: dict[str, str], steps: Sequence[Step] = FULL, port: int = 0
) -> Workload:
    """Start an emulator on ``host`` and capture its port on every ``ifaces`` (name → interface) at once.

    A capture the kernel dropped packets from (tcpdump's own count) is made again, a bounded number of times:
    the tests need whole captures, and make their holes themselves.
    """
    config = EmulatorConfig(**FAST)
    runs: list[TcpdumpRun] = []
    for _attempt in range(CAPTURE_ATTEMPTS):
        with EmulatorThread(config, host=host, port=port) as running, contextlib.ExitStack() as stack:
            runs = [
                stack.enter_context(tcpdump(base / f"{name}.pcap", f"tcp port {running.port}", iface))
                for name, iface in ifaces.items()
            ]
            sent = run_workload(running.url, config, steps)
        if all(run.dropped == 0 for run in runs):
            return Workload(running.port, host, sent, {name: base / f"{name}.pcap" for name in ifaces})
    raise CaptureFailed("tcpdump kept losing packets: " + " / ".join(run.stderr for run in runs))


@dataclass
class ProxyCapture:
    """Both legs of client → mitmdump → emulator on lo, and the addon's log of the same requests."""

    path: Path
    emulator_port: int
    proxy_port: int
    sent: list[Sent]
    log_dir: Path


def make_proxy_capture(base: Path, steps: Sequence[Step] = FULL) -> ProxyCapture:
    """The workload through a real mitmdump with the addon in front of the emulator, captured on lo (both legs);
    mitmdump is stopped (SIGINT: the addon flushes) before the log is read."""
    config = EmulatorConfig(**FAST)
    log_dir = base / "proxy-log"
    path = base / "proxy.pcap"
    with (
        EmulatorThread(config) as running,
        Mitmdump(running.url, "127.0.0.1", log_dir, base / "proxy-console.txt") as proxy,
        tcpdump(path, f"tcp port {running.port} or tcp port {proxy.port}") as run,
    ):
        sent = run_workload(proxy.url, config, steps)
    if run.dropped != 0:
        raise CaptureFailed(f"tcpdump lost packets: {run.stderr}")
    return ProxyCapture(path, running.port, proxy.port, sent, log_dir)
