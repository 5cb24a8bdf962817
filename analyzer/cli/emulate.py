"""``ollama-wire emulate``: run the built-in Ollama emulator in the foreground."""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import Callable
from typing import TypeVar

import click

from analyzer.emulator import DEFAULT_MODELS, EmulatorConfig, EmulatorServer, format_url
from analyzer.emulator.config import DEFAULT_MEMORY, DEFAULT_NUM_CTX, GIB, ModelProfile
from analyzer.emulator.wire import go_duration_s
from analyzer.protocol.endpoints import OLLAMA_PORT

T = TypeVar("T")
_SIZE_UNITS = {"": 1, "b": 1, "kib": 1024, "mib": 1024**2, "gib": GIB, "kb": 1000, "mb": 1000**2, "gb": 1000**3}


def _models(values: tuple[str, ...]) -> tuple[str, ...]:
    names = tuple(name.strip() for value in values for name in value.split(",") if name.strip())
    return names or DEFAULT_MODELS


def parse_size(text: str) -> int:
    """Bytes in ``4.5GiB``, ``800MiB``, ``2GB`` or a plain number."""
    number = text.strip().rstrip("bBiIkKmMgG")
    unit = text.strip()[len(number) :].lower()
    try:
        if unit not in _SIZE_UNITS:
            raise ValueError(unit)
        return int(float(number) * _SIZE_UNITS[unit])
    except ValueError:
        raise ValueError(f"not a size: {text!r} (a number with B, KiB, MiB, GiB, KB, MB or GB)") from None


def parse_keep_alive(text: str) -> float:
    """Seconds in a keep-alive value: a Go duration (``5m``, ``1h``, ``0``) or plain seconds (``-1``: forever)."""
    try:
        return float(text)
    except ValueError:
        return go_duration_s(text)


def parse_profile(spec: str) -> tuple[str, ModelProfile]:
    """``NAME@key=value,...`` → (name, profile); keys ``load_ms``, ``size``, ``size_vram``, ``oom``, ``thinking``,
    ``tools``."""
    name, _, settings = spec.partition("@")
    if not name or not settings:
        raise ValueError(f"expected NAME@key=value,... in {spec!r}")
    fields: dict[str, object] = {}
    for item in settings.split(","):
        key, _, value = item.strip().partition("=")
        if key == "load_ms":
            fields[key] = float(value)
        elif key in ("size", "size_vram"):
            fields[key] = parse_size(value)
        elif key in ("oom", "thinking", "tools"):
            fields[key] = value.lower() not in ("0", "false", "no")
        else:
            known = "load_ms, size, size_vram, oom, thinking, tools"
            raise ValueError(f"unknown model setting {key!r} in {spec!r} ({known})")
    return name, ModelProfile(**fields)  # type: ignore[arg-type]


def _click_value(parse: Callable[[str], T], value: str, param_hint: str) -> T:
    """``parse(value)``, with a ValueError turned into click's usage error."""
    try:
        return parse(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint=param_hint) from None


async def _serve(config: EmulatorConfig, host: str, port: int) -> None:
    server = EmulatorServer(config)
    try:
        bound = await server.start(host, port)
    except OSError as exc:
        raise click.ClickException(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    click.echo(f"emulator listening on {format_url(host, bound)}")
    sys.stdout.flush()
    try:
        await stop.wait()
    finally:
        await server.close()


@click.command("emulate")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind (use ::1 for IPv6).")
@click.option(
    "--port", default=OLLAMA_PORT, show_default=True, type=click.IntRange(0, 65535), help="0 picks a free port."
)
@click.option(
    "--models",
    multiple=True,
    help=f"Model names that exist, comma-separated or repeated; others get 404. [default: {','.join(DEFAULT_MODELS)}]",
)
@click.option("--tokens", default=24, show_default=True, type=click.IntRange(0), help="Natural reply length.")
@click.option("--think-tokens", default=8, show_default=True, type=click.IntRange(0), help="Thinking length.")
@click.option("--prefill-ms", default=50.0, show_default=True, type=click.FloatRange(0), help="Delay before token 1.")
@click.option("--token-ms", default=10.0, show_default=True, type=click.FloatRange(0), help="Delay before each token.")
@click.option("--error-after", type=click.IntRange(0), help="End streams with an error object after N tokens.")
@click.option("--close-after", type=click.IntRange(0), help="Drop the connection after N tokens.")
@click.option("--fail-status", type=click.IntRange(400, 599), help="Answer generation requests with this status.")
@click.option("--stall-after", type=click.IntRange(1), help="Pause --stall-ms after token K of every reply.")
@click.option("--stall-ms", default=0.0, show_default=True, type=click.FloatRange(0), help="Length of that pause.")
@click.option("--load-ms", default=0.0, show_default=True, type=click.FloatRange(0), help="Model load time.")
@click.option(
    "--keep-alive", default="5m", show_default=True, help="Residency after use (OLLAMA_KEEP_ALIVE; -1: forever)."
)
@click.option(
    "--num-parallel", default=0, show_default=True, type=click.IntRange(0), help="Slots per model (0: unlimited)."
)
@click.option(
    "--max-loaded-models", default=0, show_default=True, type=click.IntRange(0), help="Resident models (0: unlimited)."
)
@click.option(
    "--max-queue",
    default=0,
    show_default=True,
    type=click.IntRange(0),
    help="Requests that may wait for a model beyond the one being scheduled; more get 503 server busy (0: unlimited).",
)
@click.option("--memory", default=f"{DEFAULT_MEMORY // GIB}GiB", show_default=True, help="Memory for models.")
@click.option("--num-ctx", default=DEFAULT_NUM_CTX, show_default=True, type=click.IntRange(1), help="Context length.")
@click.option(
    "--model-profile",
    "profiles",
    multiple=True,
    metavar="NAME@KEY=VALUE,...",
    help="Per-model load_ms, size, size_vram, oom, thinking, tools (repeatable), e.g. "
    "llama3.2:1b@load_ms=2000,size=5GiB; thinking=0/tools=0: the model refuses think/tools with Ollama's 400.",
)
@click.option(
    "--openai-legacy-finish",
    is_flag=True,
    help="OpenAI streams: finish_reason on the last content chunk (older Ollama) instead of an empty delta.",
)
@click.option(
    "--body-log",
    type=click.Path(dir_okay=False),
    help="Append one JSON line per request received to this file: arrival time, method, path, body size and "
    "sha256 (never the body itself), e.g. to check that a replay sent byte-identical bodies.",
)
def emulate(
    host: str,
    port: int,
    models: tuple[str, ...],
    tokens: int,
    think_tokens: int,
    prefill_ms: float,
    token_ms: float,
    error_after: int | None,
    close_after: int | None,
    fail_status: int | None,
    stall_after: int | None,
    stall_ms: float,
    load_ms: float,
    keep_alive: str,
    num_parallel: int,
    max_loaded_models: int,
    max_queue: int,
    memory: str,
    num_ctx: int,
    profiles: tuple[str, ...],
    openai_legacy_finish: bool,
    body_log: str | None,
) -> None:
    """Run an emulated Ollama server (native and OpenAI-compatible API) until SIGINT/SIGTERM.

    Replies are deterministic text paced like a real model; the scheduler options mimic Ollama's (load on first
    use, keep-alive, OLLAMA_NUM_PARALLEL queueing, OLLAMA_MAX_LOADED_MODELS eviction, out-of-memory errors).
    See docs/emulator.md for per-request overrides.
    """
    config = EmulatorConfig(
        models=_models(models),
        tokens=tokens,
        think_tokens=think_tokens,
        prefill_ms=prefill_ms,
        token_ms=token_ms,
        error_after=error_after,
        close_after=close_after,
        fail_status=fail_status,
        openai_legacy_finish=openai_legacy_finish,
        stall_after=stall_after,
        stall_ms=stall_ms,
        load_ms=load_ms,
        keep_alive_s=_click_value(parse_keep_alive, keep_alive, "--keep-alive"),
        num_parallel=num_parallel,
        max_loaded_models=max_loaded_models,
        max_queue=max_queue,
        memory=_click_value(parse_size, memory, "--memory"),
        num_ctx=num_ctx,
        profiles=dict(_click_value(parse_profile, spec, "--model-profile") for spec in profiles),
        body_log=body_log,
    )
    asyncio.run(_serve(config, host, port))
