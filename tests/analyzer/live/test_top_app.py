"""The ``top`` dashboard driven through Textual's Pilot, fed by a real publisher on a real socket, a real log
directory and the emulator's /api/ps. Waits are bounded polls of widget state; nothing is timed."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from livefeeding import pull_line, started_builder, token_line

from analyzer.emulator import EmulatorThread
from analyzer.live.publisher import LivePublisher
from analyzer.live.top.app import TopApp
from analyzer.live.top.widgets import DetailsScreen, HelpScreen, InFlightTable, RecentTable
from analyzer.protocol.record import InteractionRecord
from analyzer.store.log import InteractionLog

pytestmark = pytest.mark.timeout(60)
SIZE = (140, 45)


def finished_record(key: str, model: str, *, error: str | None = None, status: int = 200) -> InteractionRecord:
    return InteractionRecord(
        id=key,
        source="proxy",
        started_at=time.strftime("%Y-%m-%dT%H:%M:%S.000000Z", time.gmtime(time.time() - 5)),
        method="POST",
        path="/api/generate",
        status=status,
        api="ollama",
        kind="generate",
        model=model,
        prompt="old prompt",
        response_text="old answer",
        error=error,
        ttft_ms=80.0,
        total_ms=900.0,
        eval_count=20,
        eval_tokens_per_s=40.0,
        complete=error is None,
    )


async def until(pilot: Any, condition: Callable[[], bool], timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return
        await pilot.pause(0.05)
    raise AssertionError("condition not reached")


def cells(table: Any) -> list[list[str]]:
    return [[str(cell) for cell in table.get_row_at(index)] for index in range(table.row_count)]


def header(app: TopApp) -> str:
    return str(app.query_one("#title").render())


@pytest.fixture
def log_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "log"
    InteractionLog(directory).append_many(
        [finished_record("old-ok", "llama3.2:1b"), finished_record("old-err", "qwen3:0.6b", error="boom", status=500)]
    )
    return directory


def test_in_flight_grows_then_finishes_and_keys_work(sock_path: Path, log_dir: Path, emulator: EmulatorThread) -> None:
    async def scenario() -> None:
        publisher = LivePublisher(sock_path, interval_s=0.05)
        await publisher.start()
        app = TopApp(live_path=sock_path, log_dir=log_dir, ollama_url=emulator.url, poll_machine=False)
        try:
            async with app.run_test(size=SIZE) as pilot:
                await until(pilot, lambda: app.state.live and len(app.state.recent) == 2)
                assert "live feed" in header(app)
                # A request streams: its row appears, and its token count grows.
                builder = started_builder("live1", model="llama3.2:1b", prompt="Tell me about the sea")
                publisher.interaction_started(builder)
                inflight = app.query_one(InFlightTable)
                seen: list[str] = []
                for word in ["The", " sea", " is", " big", " and", " blue"]:
                    builder.response_body(token_line(word), time.time())
                    publisher.interaction_progressed(builder)
                    count = len(seen) + 1
                    await until(pilot, lambda c=count: inflight.row_count == 1 and cells(inflight)[0][4] == str(c))
                    seen.append(cells(inflight)[0][4])
                assert seen == ["1", "2", "3", "4", "5", "6"]
                row = cells(inflight)[0]
                assert row[0] == "llama3.2:1b" and row[1] == "127.0.0.1:40000" and "Tell me about the sea" in row[7]
                assert row[3].endswith("ms")  # TTFT known
                # Details of the running request: prompt and the response so far.
                inflight.focus()
                await pilot.press("enter")
                await until(pilot, lambda: isinstance(app.screen, DetailsScreen))
                # The response tail rides on at most one progress a second: it catches up within that.
                await until(
                    pilot, lambda: "The sea is big and blue" in str(app.screen.query_one("#details-body").render())
                )
                assert "Tell me about the sea" in str(app.screen.query_one("#details-body").render())
                await pilot.press("escape")
                await until(pilot, lambda: not isinstance(app.screen, DetailsScreen))
                # It finishes: the row leaves In flight and is the newest in Recent.
                builder.response_body(token_line("", done=True), time.time())
                publisher.interaction_finished(builder.finish(time.time()))
                recent = app.query_one(RecentTable)
                await until(pilot, lambda: inflight.row_count == 0 and recent.row_count == 3)
                assert cells(recent)[0][1] == "200" and cells(recent)[0][2] == "llama3.2:1b"
                # e: errors only
                await pilot.press("e")
                await until(pilot, lambda: recent.row_count == 1)
                assert cells(recent)[0][1] == "500" and "boom" in cells(recent)[0][-1]
                assert "errors only" in header(app)
                await pilot.press("e")
                await until(pilot, lambda: recent.row_count == 3)
                # /: filter by model
                await pilot.press("slash")
                await pilot.press(*"qwen", "enter")
                await until(pilot, lambda: recent.row_count == 1)
                assert cells(recent)[0][2] == "qwen3:0.6b" and "model ~ 'qwen'" in header(app)
                await pilot.press("slash", "ctrl+u", "enter")  # the field starts with the filter; empty clears
                await until(pilot, lambda: recent.row_count == 3)
                # p: pause — new data is kept but not drawn
                await pilot.press("p")
                assert "PAUSED" in header(app)
                paused = started_builder("live2", model="qwen3:0.6b")
                publisher.interaction_started(paused)
                await until(pilot, lambda: "live2" in app.state.view.running)
                await pilot.pause(0.6)
                assert inflight.row_count == 0
                await pilot.press("p")
                await until(pilot, lambda: inflight.row_count == 1)
                # ?: help; w: the per-model window
                await pilot.press("question_mark")
                await until(pilot, lambda: isinstance(app.screen, HelpScreen))
                await pilot.press("escape")
                await pilot.press("w")
                await until(pilot, lambda: "1 hour" in str(app.query_one("#models").border_title))
                # The Ollama panel asked the emulator's /api/ps.
                await until(pilot, lambda: app.state.ollama.reachable is True)
                await pilot.press("q")
            assert app.return_code in (0, None)
        finally:
            publisher.close()

    asyncio.run(scenario())


def test_log_only_then_reconnects_when_the_addon_comes(sock_path: Path, log_dir: Path) -> None:
    async def scenario() -> None:
        app = TopApp(live_path=sock_path, log_dir=log_dir, ollama_url="http://127.0.0.1:9", poll_machine=False)
        publisher = LivePublisher(sock_path, interval_s=0.05)
        try:
            async with app.run_test(size=SIZE) as pilot:
                recent = app.query_one(RecentTable)
                await until(pilot, lambda: recent.row_count == 2 and app.state.feed_problem != "")
                assert "log only" in header(app) and "finished requests only" in header(app)
                assert "no live feed at" in header(app)
                await until(pilot, lambda: app.state.ollama.reachable is False)
                # A record appended to the log shows up without the feed.
                InteractionLog(log_dir).append(finished_record("later", "llama3.2:1b"))
                await until(pilot, lambda: recent.row_count == 3)
                # The addon starts: top attaches by itself and sees what is running.
                await publisher.start()
                builder = started_builder("pull1", model="mistral:7b", path="/api/pull")
                publisher.interaction_started(builder)
                builder.response_body(pull_line(1024), time.time())
                publisher.interaction_progressed(builder)
                inflight = app.query_one(InFlightTable)
                await until(pilot, lambda: app.state.live and inflight.row_count == 1, timeout_s=15)
                assert "live feed" in header(app)
                row = cells(inflight)[0]
                assert row[0] == "⇣ mistral:7b" and "25%" in row[7] and "█" in row[7] and "ETA" in row[7]
                # The addon goes away again: back to log only, nothing claimed to be running.
                publisher.close()
                await until(pilot, lambda: not app.state.live and inflight.row_count == 0)
                assert "log only" in header(app)
        finally:
            publisher.close()

    asyncio.run(scenario())


def test_an_error_rings_the_alerts(sock_path: Path, log_dir: Path) -> None:
    """With --bell, a failed request that ends is an alert (rate-limited: a second one waits)."""
    from analyzer.live.top.alerts import Alerts

    async def scenario() -> Alerts:
        publisher = LivePublisher(sock_path, interval_s=0.05)
        await publisher.start()
        alerts = Alerts(notify=False, bell=True)
        app = TopApp(live_path=sock_path, log_dir=log_dir, ollama_url="http://127.0.0.1:9", alerts=alerts)
        try:
            async with app.run_test(size=SIZE) as pilot:
                await until(pilot, lambda: app.state.live)
                for key in ("bad1", "bad2"):
                    builder = started_builder(key)
                    publisher.interaction_started(builder)
                    publisher.interaction_finished(builder.finish(time.time(), error="upstream went away"))
                    await until(pilot, lambda k=key: alerts.sent == 1 and app.state.record_by_id(k) is not None)
                await pilot.pause(0.6)  # a redraw tick later: still one sent, the second waits its 30 s
                assert alerts.sent == 1
                await pilot.press("q")
        finally:
            publisher.close()
        return alerts

    alerts = asyncio.run(scenario())
    assert alerts.pending == ["error: llama3.2:1b /api/generate: upstream went away"]
