"""``ollama-wire resources``: what every resource sampler sees on this machine right now, or why it cannot."""

from __future__ import annotations

import json
import time
from pathlib import Path

import click

from analyzer.protocol.endpoints import OLLAMA_PORT
from analyzer.protocol.untrusted import for_terminal
from analyzer.resources.base import Sampler
from analyzer.resources.registry import AUTO_SKIPS, SOURCE_NAMES, Target, open_samplers, parse_spec
from analyzer.resources.timeline import SamplingThread, Timeline, open_timeline_file


def _server(ctx: click.Context, param: click.Parameter, value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536 or not host:
        raise click.BadParameter(f"expected HOST:PORT, e.g. 127.0.0.1:{OLLAMA_PORT}", ctx=ctx, param=param)
    return host.strip("[]"), int(port)


def _spec(ctx: click.Context, param: click.Parameter, value: str) -> str:
    try:
        parse_spec(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc), ctx=ctx, param=param) from exc
    return value


def _shown(value: float) -> str:
    return f"{value:.1f}" if abs(value) >= 1 or value == 0 else f"{value:.3g}"


@click.command()
@click.option("--check", is_flag=True, help="Open every sampler, read it twice and print what it sees (or why not).")
@click.option(
    "--record",
    "record_path",
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    help="Write a resource timeline (JSON Lines) to FILE for --duration seconds; analyze-pcap joins a timeline "
    "named like the capture (NAME.resources.jsonl beside NAME.pcap).",
)
@click.option("--duration", type=click.IntRange(1, 86_400), default=60, show_default=True, help="Seconds to --record.")
@click.option(
    "--sources",
    default="auto",
    show_default=True,
    callback=_spec,
    help=f"auto, or a comma-separated list of: {', '.join(SOURCE_NAMES)}.",
)
@click.option(
    "--server",
    default=f"127.0.0.1:{OLLAMA_PORT}",
    show_default=True,
    callback=_server,
    help="The Ollama server (its listening port finds the process; /api/ps is asked there).",
)
@click.option(
    "--interval", type=click.IntRange(10, 60_000), default=200, show_default=True, help="Milliseconds between samples."
)
@click.option("--json", "as_json", is_flag=True, help="With --check: one JSON object instead of text.")
def resources(
    check: bool,
    record_path: Path | None,
    duration: int,
    sources: str,
    server: tuple[str, int],
    interval: int,
    as_json: bool,
) -> None:
    """Check or record the machine resources ollama-wire attributes to requests.

    \b
    ollama-wire resources --check                 every sampler: what it sees now, or why it cannot
    ollama-wire resources --check --server 127.0.0.1:11500
    ollama-wire resources --record night.resources.jsonl --duration 3600

    Sources: nvidia (NVML: GPU utilisation from the driver's buffered samples, memory, power, the energy
    counter), macmon (Apple Silicon, no root), powermetrics (Apple Silicon through the capture helper, root),
    process (the Ollama server found by its port, with its runners: CPU time, resident memory), host (memory in
    use and pressure), ollama_ps (loaded models and their GPU memory). The proxy fills the resource columns with
    the same samplers (addon option ollama_resources).
    """
    if not check and record_path is None:
        raise click.UsageError("give --check (what every sampler sees now) or --record FILE")
    target = Target(host=server[0], port=server[1], interval_ms=interval)
    opened = open_samplers(sources, target, auto_skips=() if check else AUTO_SKIPS)
    try:
        if record_path is not None:
            _record(opened.samplers, record_path, duration, interval)
            return
        readings: dict[str, dict[str, float]] = {}
        for sampler in opened.samplers:
            readings[sampler.name] = sampler.read()
        time.sleep(max(0.25, interval / 1000))  # a second reading, so counters and buffered samples show
        for sampler in opened.samplers:
            try:
                readings[sampler.name].update(sampler.read())
            except Exception as exc:
                opened.unavailable[sampler.name] = f"read failed: {exc}"
        details = {s.name: s.details() for s in opened.samplers}
    finally:
        if record_path is None:
            for sampler in opened.samplers:
                sampler.close()
    if as_json:
        out = {name: {"available": True, "values": readings[name], "details": details[name]} for name in readings} | {
            name: {"available": False, "reason": why} for name, why in opened.unavailable.items()
        }
        click.echo(json.dumps(out, indent=2, default=str))
        return
    for name in [n for n in SOURCE_NAMES if n in readings or n in opened.unavailable]:
        if name in opened.unavailable:
            click.echo(for_terminal(f"{name:13} unavailable: {opened.unavailable[name]}"))
            continue
        values = "  ".join(f"{k}={_shown(v)}" for k, v in sorted(readings[name].items())) or "(no values yet)"
        click.echo(for_terminal(f"{name:13} ok  {values}"))  # /api/ps names models: a client chose them
        for key, value in details[name].items():
            click.echo(for_terminal(f"{'':13}     {key}: {value}"))


def _record(samplers: list[Sampler], path: Path, duration: int, interval: int) -> None:
    """Sample into a new private timeline file for ``duration`` seconds (Ctrl-C ends it early, file kept)."""
    if not samplers:
        raise click.ClickException("no resource sampler works here (see ollama-wire resources --check)")
    try:
        sink = open_timeline_file(path)
    except OSError as exc:
        raise click.ClickException(f"{path}: cannot write: {exc.strerror or exc}") from None
    thread = SamplingThread(samplers, Timeline(), interval, sink=sink)
    thread.start()
    try:
        time.sleep(duration)
    except KeyboardInterrupt:
        pass
    finally:
        thread.stop()
        sink.close()
    click.echo(f"{path}: {len(thread.timeline)} samples from {', '.join(s.name for s in samplers)}")
