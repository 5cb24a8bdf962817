"""The dashboard's pieces without a screen: alerts (rate limit, a real notify-send process), stall detection,
the per-model window, row formatting."""

from __future__ import annotations

import os
import stat
import time
from pathlib import Path

import pytest

from analyzer.live.top import rows
from analyzer.live.top.alerts import Alerts
from analyzer.live.top.state import STALL_AFTER_S, TopState
from analyzer.protocol.record import InteractionRecord


def test_alerts_are_rate_limited_and_summed() -> None:
    alerts = Alerts(notify=False, bell=True, min_interval_s=30)
    alerts.add("error: m /api/chat: boom")
    assert alerts.take(now=1000.0) == ("ollama-wire: error: m /api/chat: boom", "error: m /api/chat: boom")
    alerts.add("stalled: a")
    alerts.add("aborted: b")
    assert alerts.take(now=1010.0) is None  # too soon: kept for later
    title, body = alerts.take(now=1031.0) or ("", "")
    assert title == "ollama-wire: 2 alerts" and body == "stalled: a\naborted: b"
    assert Alerts(notify=False, bell=False).enabled is False


def test_notify_runs_the_desktop_notifier(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A real ``notify-send`` on PATH (a script recording its arguments) is what ``--notify`` runs."""
    out = tmp_path / "args.txt"
    script = tmp_path / "notify-send"
    script.write_text(f'#!/bin/sh\nprintf "%s\\n" "$@" > {out}\n')
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    alerts = Alerts(notify=True, bell=False)
    assert alerts.command == [str(script)]
    alerts.add("error: llama3.2:1b /api/generate: model not found")
    title, body = alerts.take() or ("", "")
    alerts.send(title, body)
    assert out.read_text().splitlines() == ["--app-name=ollama-wire", title, body]


def _events(state: TopState, key: str, started: float, ticks: list[tuple[float, int]]) -> None:
    if not state.live:
        state.apply_event({"event": "hello", "time": started, "pid": 1, "in_flight": 0})
    state.apply_event({"event": "start", "id": key, "time": started, "started_at": started, "model": "m"})
    for at, tokens in ticks:
        state.apply_event({"event": "progress", "id": key, "time": at, "tokens": tokens})


def test_a_stream_whose_tokens_stop_counts_as_stalled() -> None:
    state = TopState("sock", "log", "http://x")
    now = time.time()
    _events(state, "s1", now - 100, [(now - 99, 1), (now - 98, 5), (now - 97, 5)])
    _events(state, "s2", now - 2, [(now - 1, 3)])
    assert [r.id for r in state.stalled(now)] == ["s1"]
    assert not state.stalled(now - 100 + STALL_AFTER_S)  # before the limit nothing is stalled


def test_live_rate_and_sparkline_come_from_progress_readings() -> None:
    state = TopState("sock", "log", "http://x")
    now = 1000.0
    _events(state, "r", now - 3, [(now - 3 + i * 0.1, i * 2) for i in range(31)])  # 20 tokens/s for 3 s
    running = state.view.running["r"]
    assert running.live_rate() == pytest.approx(20.0)
    series = running.rate_series(6, 0.5, now)
    assert len(series) == 6 and all(v == pytest.approx(20.0) for v in series)
    assert rows.sparkline([1.0, 2.0, 4.0, 8.0]) == "▂▃▅█"
    assert rows.bar(0.25, 8) == "██░░░░░░"


def test_per_model_window_counts_errors_and_percentiles() -> None:
    state = TopState("sock", "log", "http://x")
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S.000000Z", time.gmtime(time.time() - 60))
    old = time.strftime("%Y-%m-%dT%H:%M:%S.000000Z", time.gmtime(time.time() - 1800))
    for i, ttft in enumerate([100.0, 200.0, 300.0]):
        state.add_finished(InteractionRecord(id=f"a{i}", started_at=stamp, kind="chat", model="a", ttft_ms=ttft))
    state.add_finished(InteractionRecord(id="e", started_at=stamp, kind="chat", model="a", status=500, error="x"))
    state.add_finished(InteractionRecord(id="old", started_at=old, kind="chat", model="b", ttft_ms=1.0))
    assert not state.add_finished(InteractionRecord(id="a0", started_at=stamp, kind="chat", model="a"))  # known
    five = state.per_model(300, time.time())
    assert [(s.model, s.requests, s.errors, s.ttft_p50) for s in five] == [("a", 4, 1, 200.0)]
    assert [s.model for s in state.per_model(3600, time.time())] == ["a", "b"]


def test_per_model_shows_the_busiest_models_and_sums_the_others() -> None:
    """10,000 model names (RECENT_KEPT records) give MODELS_SHOWN rows plus one for the others, not thousands."""
    from analyzer.live.top.state import MODELS_SHOWN, RECENT_KEPT

    state = TopState("sock", "log", "http://x")
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S.000000Z", time.gmtime(time.time() - 60))
    for i in range(10_000):
        state.add_finished(InteractionRecord(id=f"m{i}", started_at=stamp, kind="chat", model=f"model-{i}"))
    for i in range(5):  # "busy" has the most requests: it must be among the rows shown
        state.add_finished(InteractionRecord(id=f"b{i}", started_at=stamp, kind="chat", model="busy"))
    shown = state.per_model(3600, time.time())
    assert len(shown) == MODELS_SHOWN + 1
    assert "busy" in [s.model for s in shown] and shown[-1].others
    assert sum(s.requests for s in shown) == RECENT_KEPT  # nothing lost: the others row sums the rest
    others = RECENT_KEPT - 5 - (MODELS_SHOWN - 1)
    assert shown[-1].model == f"({others} other models)"
    assert len({s.key for s in shown}) == len(shown)


def test_a_model_named_like_the_others_row_keeps_its_own_key() -> None:
    state = TopState("sock", "log", "http://x")
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S.000000Z", time.gmtime(time.time() - 60))
    for i in range(3):
        state.add_finished(InteractionRecord(id=f"x{i}", started_at=stamp, kind="chat", model=f"m{i}"))
    state.add_finished(InteractionRecord(id="y", started_at=stamp, kind="chat", model="(2 other models)"))
    shown = state.per_model(3600, time.time(), limit=2)
    assert [s.model for s in shown][-1] == "(2 other models)" and len({s.key for s in shown}) == len(shown)


def test_rows_are_text_never_markup_and_never_raw_controls() -> None:
    from rich.text import Text

    stamp = time.strftime("%Y-%m-%dT%H:%M:%S.000000Z", time.gmtime(time.time() - 60))
    record = InteractionRecord(
        id="h",
        started_at=stamp,
        kind="chat",
        model="mark[/]up\x1b]0;OWNED\x07",
        path="/api/chat\n[bold]x",
        status=500,
        error="boom\x1b[2J\nforged line",
        flags=["client_aborted"],
    )
    cells = rows.recent_row(record)
    texts = [c for c in cells if isinstance(c, Text)]
    assert {c.plain for c in texts} >= {"mark[/]up\\x1b]0;OWNED\\x07", "/api/chat\\n[bold]x"}
    for cell in cells:
        plain = cell.plain if isinstance(cell, Text) else str(cell)
        assert "\x1b" not in plain and "\n" not in plain and "\x07" not in plain
