"""Human-readable one-line summaries of records (the addon's console line, `logs` listings)."""

from __future__ import annotations

from analyzer.protocol.record import InteractionRecord
from analyzer.protocol.untrusted import terminal_cell

# How much of each traffic-chosen field the one line shows (escaped first: see analyzer.protocol.untrusted).
MODEL_WIDTH = 80
PATH_WIDTH = 120
ERROR_WIDTH = 120


def _ms(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value / 1000:.2f}s" if value >= 10_000 else f"{value:.0f}ms"


def one_line(record: InteractionRecord) -> str:
    """``POST /api/chat llama3.2:1b 200 ttft 85ms 24 tok 41.2 tok/s 0.66s [flags]``.

    Always one line: what came from traffic (method, path, model, error) is escaped for the terminal and cut.
    """
    tokens = record.eval_count if record.eval_count is not None else None
    rate = record.eval_tokens_per_s if record.eval_tokens_per_s is not None else record.wire_tokens_per_s
    parts = [
        terminal_cell(record.method, 16) or "?",
        terminal_cell(record.path, PATH_WIDTH) or "?",
        terminal_cell(record.model, MODEL_WIDTH) if record.model else "-",
        str(record.status) if record.status is not None else "-",
        f"ttft {_ms(record.ttft_ms)}",
        f"{tokens} tok" if tokens is not None else f"{record.chunks} chunks",
        f"{rate:.1f} tok/s" if rate is not None else "- tok/s",
        _ms(record.total_ms),
    ]
    if record.error:  # an HTML error page must not turn the console line into a screenful
        error = " ".join(record.error[: ERROR_WIDTH * 8].split())
        parts.append(f"error: {terminal_cell(error, ERROR_WIDTH)}")
    if record.flags:
        parts.append("[" + ",".join(record.flags) + "]")
    return " ".join(parts)
