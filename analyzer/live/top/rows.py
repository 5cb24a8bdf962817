"""Table rows and panel lines for the dashboard, shared by the Textual screen and the ``--once`` snapshot."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from rich.text import Text

from analyzer.live.subscriber import Running
from analyzer.live.top.state import (
    WINDOWS_S,
    GpuStatus,
    MachineStatus,
    ModelStats,
    OllamaStatus,
    TopState,
    is_error,
    token_rate,
)
from analyzer.protocol.record import InteractionRecord
from analyzer.protocol.untrusted import terminal_cell
from analyzer.resources.cost import Prices, cost_columns

WINDOWS = WINDOWS_S
__all__ = ["WINDOWS", "is_error"]
SPARK = "▁▂▃▄▅▆▇█"
BAR_WIDTH = 20
SPARK_WIDTH = 12
SPARK_BUCKET_S = 0.5

IN_FLIGHT_COLUMNS = ("Model", "Client", "Elapsed", "TTFT", "Tokens", "Tok/s", "Rate", "Prompt / progress")
RECENT_COLUMNS = ("Ended", "Status", "Model", "Path", "TTFT", "Think", "Tok/s", "Tokens", "Total", "Flags")
MODEL_COLUMNS = ("Model", "Reqs", "Err", "TTFT p50", "TTFT p95", "Tok/s")
COST_COLUMNS = ("Energy $", "API $")  # only with --prices


CELL_WIDTH = 48  # a cell never holds more of a traffic string than this: one huge name must not push the others off
LAST_CELL_WIDTH = 200  # the last column (prompt, flags) takes what is left of the screen
LOADED_SHOWN = 10  # the Ollama panel lists this many loaded models, then a count


def data(value: Any, style: str = "", width: int = CELL_WIDTH) -> Text:
    """A cell or line part holding text from traffic or from files: a ``Text`` (never parsed as markup), its
    control characters escaped and its length cut (``analyzer.protocol.untrusted``)."""
    return Text(terminal_cell("" if value is None else value, width), style=style, no_wrap=True, overflow="ellipsis")


def recent_columns(with_cost: bool) -> tuple[str, ...]:
    return RECENT_COLUMNS[:-1] + COST_COLUMNS + RECENT_COLUMNS[-1:] if with_cost else RECENT_COLUMNS


def model_columns(with_cost: bool) -> tuple[str, ...]:
    return MODEL_COLUMNS + COST_COLUMNS if with_cost else MODEL_COLUMNS


def usd(value: float | None) -> str:
    """``$0.000123``: six decimals, like ``logs --prices``; ``-`` where the cost is unknown."""
    return "-" if value is None else f"${value:.6f}"


def ms(value: float | None) -> str:
    if value is None:
        return "-"
    if value >= 10_000:
        return f"{value / 1000:.1f}s"
    return f"{value:.0f}ms"


def seconds(value: float) -> str:
    value = max(value, 0.0)
    if value < 60:
        return f"{value:.1f}s"
    minutes, secs = divmod(int(value), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    return f"{minutes // 60}h{minutes % 60:02d}m"


def size(value: float | None) -> str:
    if value is None:
        return "-"
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(value) < 1024 or unit == "TB":
            return f"{value:.0f}{unit}" if unit == "B" else f"{value:.1f}{unit}"
        value /= 1024
    return "-"


def rate(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def sparkline(values: list[float], width: int = 12) -> str:
    """The last ``width`` values as block characters scaled to their maximum."""
    shown = values[-width:]
    if not shown:
        return ""
    top = max(shown) or 1.0
    return "".join(SPARK[min(int(v / top * (len(SPARK) - 1) + 0.5), len(SPARK) - 1)] for v in shown)


def bar(fraction: float, width: int = BAR_WIDTH) -> str:
    fraction = min(max(fraction, 0.0), 1.0)
    full = int(fraction * width)
    return "█" * full + "░" * (width - full)


def _pull_cell(running: Running, elapsed_s: float) -> str:
    pull = running.progress.get("pull") or {}
    total, done = int(pull.get("total") or 0), int(pull.get("completed") or 0)
    status = str(pull.get("status") or "starting")
    if not total:
        return status
    speed = done / elapsed_s if elapsed_s > 0 else 0.0
    eta = status  # once all bytes are there: verifying, writing manifest, ...
    if done < total:
        eta = f"ETA {seconds((total - done) / speed)}" if speed > 0 else "ETA -"
    return f"{bar(done / total)} {done / total:4.0%} {size(done)}/{size(total)} {size(speed)}/s {eta}"


def in_flight_row(running: Running, now: float) -> tuple[Any, ...]:
    """One running request: model, client, elapsed, TTFT, tokens, live tok/s, sparkline, prompt (or pull bar)."""
    start, progress = running.start, running.progress
    started = float(start.get("started_at") or now)
    elapsed = now - started
    live_rate = running.live_rate()
    if running.is_pull:  # bytes, not tokens: the bar says it all
        model = data(f"⇣ {running.model or '?'}", "bold cyan")
        client = data(start.get("client", ""))
        pull = data(_pull_cell(running, elapsed), width=LAST_CELL_WIDTH)
        return (model, client, seconds(elapsed), "-", "-", "-", "", pull)
    last = start.get("prompt_preview") or f"{start.get('method', '')} {start.get('path', '')}"
    tokens = str(progress.get("tokens", 0)) if progress else "0"
    model = data(running.model or "?", "bold")
    ttft = progress.get("ttft_ms") if progress else None
    ttft_cell = Text(ms(ttft)) if ttft is not None else Text("waiting", style="yellow")
    return (
        model,
        data(start.get("client", "")),
        seconds(elapsed),
        ttft_cell,
        tokens,
        rate(live_rate),
        Text(sparkline(running.rate_series(SPARK_WIDTH, SPARK_BUCKET_S, now), SPARK_WIDTH), style="green"),
        data(last, width=LAST_CELL_WIDTH),
    )


def flags_of(record: InteractionRecord) -> str:
    return ",".join(record.flags or [])


def recent_row(record: InteractionRecord, prices: Prices | None = None) -> tuple[Any, ...]:
    """One finished request; errors in red with their message where the flags go; cost with ``prices``."""
    when = ""
    if record.started_at:
        try:
            ended = datetime.fromisoformat(record.started_at.replace("Z", "+00:00")).timestamp()
            when = datetime.fromtimestamp(ended + (record.total_ms or 0.0) / 1000).strftime("%H:%M:%S")
        except ValueError:
            when = record.started_at[:19]
    error = is_error(record)
    style = "bold red" if error else ""
    status = Text(str(record.status) if record.status is not None else "-", style=style or "green")
    tokens = record.eval_count if record.eval_count is not None else record.chunks
    flags = flags_of(record)
    if record.error:
        flags = (" ".join(record.error[:600].split())[:60] + (f" [{flags}]" if flags else "")).strip()
    costs: tuple[str, ...] = ()
    if prices is not None:
        cost = cost_columns(record, prices)
        costs = (usd(cost["cost_energy_usd"]), usd(cost["cost_api_usd"]))
    return (
        when,
        status,
        data(record.model or "-", style),
        data(record.path),
        ms(record.ttft_ms),
        ms(record.thinking_ms),  # first thinking token → first answer token
        rate(token_rate(record)),
        str(tokens),
        ms(record.total_ms),
        *costs,
        data(flags, style or "dim", LAST_CELL_WIDTH),
    )


def model_row(stats: ModelStats, with_cost: bool = False) -> tuple[Any, ...]:
    errors = Text(str(stats.errors), style="bold red" if stats.errors else "")
    costs = (usd(stats.cost_energy_usd), usd(stats.cost_api_usd)) if with_cost else ()
    return (
        data(stats.model, "italic" if stats.others else ""),
        str(stats.requests),
        errors,
        ms(stats.ttft_p50),
        ms(stats.ttft_p95),
        rate(stats.tokens_per_s),
        *costs,
    )


def cost_totals(state: TopState, window_s: float, now: float) -> str:
    """``$0.000120 energy, $0.004200 API``: the window's totals (empty without prices)."""
    if state.prices is None:
        return ""
    totals = state.window_costs(window_s, now)
    return f"{usd(totals['cost_energy_usd'])} energy, {usd(totals['cost_api_usd'])} API"


def _until(expires_at: str, now: float) -> str:
    try:
        when = datetime.fromisoformat(expires_at.replace("Z", "+00:00"))
    except ValueError:
        # Go's RFC 3339 with nanoseconds: cut to microseconds
        try:
            head, _, tail = expires_at.partition(".")
            digits = "".join(c for c in tail if c.isdigit())[:6]
            zone = tail[len("".join(c for c in tail if c.isdigit())) :]
            when = datetime.fromisoformat(f"{head}.{digits}{zone}".replace("Z", "+00:00"))
        except ValueError:
            return "?"
    left = when.astimezone(UTC).timestamp() - now
    if left > 365 * 86400:
        return "stays loaded"
    if left <= 0:
        return "unloading"
    if left < 60:
        return f"unloads in {left:.0f}s"
    return f"unloads in {left / 60:.0f}m" if left < 3600 else f"unloads in {left / 3600:.0f}h"


def ollama_lines(status: OllamaStatus, now: float) -> list[Text]:
    """The Ollama panel: reachable or not, then one line per loaded model."""
    if status.reachable is None:
        return [data(f"{status.url}: asking…", "dim", LAST_CELL_WIDTH)]
    if not status.reachable:
        return [data(f"{status.url} unreachable", "bold red", LAST_CELL_WIDTH), data(status.error, "dim", 80)]
    head = data(f"{status.url} up", "green", LAST_CELL_WIDTH)
    if status.version:
        head.append_text(data(f" (v{status.version})", "dim", 40))
    lines = [head]
    if not status.models:
        lines.append(Text("no model loaded", style="dim"))
    for model in status.models[:LOADED_SHOWN]:
        total = int(model.get("size") or 0)
        vram = int(model.get("size_vram") or 0)
        share = f"{vram / total:.0%} VRAM" if total else "-"
        lines.append(
            Text.assemble(
                data(model.get("name") or model.get("model") or "?", "bold", 80),
                f" {size(total)} {share} ",
                (_until(str(model.get("expires_at") or ""), now), "dim"),
            )
        )
    if len(status.models) > LOADED_SHOWN:
        lines.append(Text(f"… and {len(status.models) - LOADED_SHOWN} more loaded", style="dim"))
    return lines


def gpu_line(gpu: GpuStatus) -> Text:
    """One line: utilisation, memory, power from the GPU sampler, or why there is none."""
    if gpu.available is None:
        return Text("GPU: looking for a GPU sampler…", style="dim")
    if not gpu.available:
        return data(f"GPU: unavailable because {gpu.reason}", "dim", LAST_CELL_WIDTH)
    util = gpu.util_pct
    parts = [f"GPU    {bar((util or 0.0) / 100, 8)} {'-' if util is None else f'{util:.0f}%'}"]
    if gpu.mem_mb is not None:
        parts.append(f"{gpu.mem_mb / 1000:.1f} GB")
    if gpu.power_w is not None:
        parts.append(f"{gpu.power_w:.0f} W")
    return Text(" · ".join(parts))


def machine_lines(machine: MachineStatus, gpu: GpuStatus | None = None) -> list[Text]:
    """The Machine panel: memory, CPU, the GPU (resource samplers), and the Ollama server process."""
    memory = machine.memory_used / machine.memory_total if machine.memory_total else 0.0
    lines = [
        Text(f"Memory {bar(memory, 8)} {size(machine.memory_used)}/{size(machine.memory_total)}"),
        Text(f"CPU    {bar(machine.cpu_percent / 100, 8)} {machine.cpu_percent:.0f}% of {machine.cpus} CPUs"),
    ]
    if gpu is not None:
        lines.append(gpu_line(gpu))
    if machine.ollama_pid is not None:
        lines.append(data(f"Ollama pid {machine.ollama_pid} ({machine.ollama_name or '?'})", "bold", LAST_CELL_WIDTH))
        lines.append(Text(f"  {size(machine.ollama_rss)} RSS, {machine.ollama_cpu_percent:.0f}% CPU"))
    elif machine.note:
        lines.append(data(machine.note, "dim", LAST_CELL_WIDTH))
    return lines


def header_text(state: TopState, costs: str = "") -> str:
    """The one line saying where the data comes from (live feed or log only) and what the filters are.

    Plain text with escaped control characters (it quotes paths and feed errors); show it as a ``Text``.
    """
    if state.live:
        source = f"live feed {state.live_path}"
    else:
        source = f"log only ({state.log_dir}): finished requests only — {state.feed_problem or 'no live feed'}"
        if state.log_problem:
            source += f" — {state.log_problem}"
    parts = [f"ollama-wire top · {source}", f"{len(state.view.running)} running", f"{len(state.recent)} finished"]
    if costs:
        parts.append(costs)
    if state.view.dropped:
        parts.append(f"{state.view.dropped} events dropped")
    if state.errors_only:
        parts.append("errors only")
    if state.model_filter:
        parts.append(f"model ~ {state.model_filter!r}")
    if state.paused:
        parts.append("PAUSED")
    return terminal_cell(" · ".join(parts), 1000)
