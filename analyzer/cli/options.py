"""Option callbacks shared by several commands (one parser each, so every command reads a value the same way)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

import click

from analyzer.protocol.endpoints import OLLAMA_PORT
from analyzer.store.select import parse_since


def moment_option(ctx: click.Context, param: click.Parameter, value: str | None) -> datetime | None:
    """``--since``/``--until``: 30m, 2h, 1d, 1w ago, or an ISO date/time; a bad value is a usage error naming the
    option."""
    if value is None:
        return None
    try:
        return parse_since(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc), ctx=ctx, param=param) from exc


def replays_option(command: Callable[..., Any]) -> Callable[..., Any]:
    """``--include-replays``: the flag every reading command shares (records ``ollama-wire replay`` wrote)."""
    return click.option(
        "--include-replays",
        is_flag=True,
        help="Also count the records `ollama-wire replay` wrote (source: replay); left out by default so a "
        "replay never pollutes the picture of real traffic.",
    )(command)


def capture_ports_option(command: Callable[..., Any]) -> Callable[..., Any]:
    """``--port`` (repeatable) for commands that read captures: which TCP ports are Ollama's."""
    return click.option(
        "--port",
        "ports",
        multiple=True,
        type=click.IntRange(1, 65535),
        help=f"For captures: Ollama's server port (repeatable; default {OLLAMA_PORT}).",
    )(command)
