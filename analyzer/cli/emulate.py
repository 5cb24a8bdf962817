"""``ollama-wire emulate``: run the built-in Ollama emulator in the foreground."""

from __future__ import annotations

import asyncio
import signal
import sys

import click

from analyzer.emulator import DEFAULT_MODELS, EmulatorConfig, EmulatorServer, format_url
from analyzer.protocol.endpoints import OLLAMA_PORT


def _models(values: tuple[str, ...]) -> tuple[str, ...]:
    names = tuple(name.strip() for value in values for name in value.split(",") if name.strip())
    return names or DEFAULT_MODELS


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
@click.option(
    "--openai-legacy-finish",
    is_flag=True,
    help="OpenAI streams: finish_reason on the last content chunk (older Ollama) instead of an empty delta.",
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
    openai_legacy_finish: bool,
) -> None:
    """Run an emulated Ollama server (native and OpenAI-compatible API) until SIGINT/SIGTERM.

    Replies are deterministic text paced like a real model; see docs/emulator.md for per-request overrides.
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
    )
    asyncio.run(_serve(config, host, port))
