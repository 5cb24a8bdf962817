"""The live feed's publisher and subscriber over a real Unix socket, driven by a real InteractionBuilder.

Everything runs on one asyncio loop as in mitmproxy: observer calls happen between awaits, the ticker and the
socket server run on the same loop. No assertion depends on speed; coalescing is checked by counting events
against the number of ticks that could have happened.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import socket
import stat
import time
from pathlib import Path
from typing import Any

import pytest
from livefeeding import pull_line, started_builder, token_line

from analyzer.live import events
from analyzer.live.publisher import LiveError, LivePublisher
from analyzer.live.subscriber import LiveView, read_events
from analyzer.protocol.redact import REDACT_DROP, REDACT_HASH

pytestmark = pytest.mark.timeout(30)
INTERVAL = 0.02


class Collector:
    """A subscriber reading the feed into a list, in the background."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.events: list[dict[str, Any]] = []
        self.task: asyncio.Task | None = None

    async def __aenter__(self) -> Collector:
        self.task = asyncio.get_running_loop().create_task(self._run())
        await self.wait_for(lambda e: e["event"] == "hello")
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.task is not None
        self.task.cancel()

    async def _run(self) -> None:
        async for event in read_events(self.path):
            self.events.append(event)

    async def wait_for(self, predicate, count: int = 1, timeout_s: float = 5.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            found = [e for e in self.events if predicate(e)]
            if len(found) >= count:
                return found
            await asyncio.sleep(0.005)
        kinds = [e["event"] for e in self.events]
        raise AssertionError(f"{len([e for e in self.events if predicate(e)])} of {count}; events: {kinds[-20:]}")

    def of(self, kind: str, key: str | None = None) -> list[dict[str, Any]]:
        return [e for e in self.events if e["event"] == kind and (key is None or e.get("id") == key)]


async def serving(path: Path, **options: Any) -> LivePublisher:
    publisher = LivePublisher(path, interval_s=INTERVAL, **options)
    await publisher.start()
    return publisher


def run(coro) -> Any:
    return asyncio.run(asyncio.wait_for(coro, 20))


def test_event_format_start_progress_end(sock_path: Path) -> None:
    async def scenario() -> None:
        publisher = await serving(sock_path)
        try:
            async with Collector(sock_path) as feed:
                builder = started_builder("g1", prompt="Why   is the\nsky blue?")
                publisher.interaction_started(builder)
                for word in ("The", " sky", " is"):
                    builder.response_body(token_line(word), time.time())
                    publisher.interaction_progressed(builder)
                await feed.wait_for(lambda e: e["event"] == "progress" and e["tokens"] == 3)
                builder.response_body(token_line("", done=True), time.time())
                record = builder.finish(time.time())
                publisher.interaction_finished(record)
                (end,) = await feed.wait_for(lambda e: e["event"] == "end")
        finally:
            publisher.close()
        hello = feed.events[0]
        assert hello["event"] == "hello" and hello["version"] == events.FEED_VERSION and hello["pid"] == os.getpid()
        (start,) = feed.of("start", "g1")
        assert start["model"] == "llama3.2:1b" and start["method"] == "POST" and start["path"] == "/api/generate"
        assert start["client"] == "127.0.0.1:40000" and start["kind"] == "generate" and start["stream"] is True
        assert start["prompt_preview"] == "Why is the sky blue?" and start["prompt"] == "Why   is the\nsky blue?"
        progress = feed.of("progress", "g1")[-1]
        assert progress["tokens"] == 3 and progress["ttft_ms"] is not None and progress["bytes"] > 0
        assert progress["response_tail"] == "The sky is" and progress["status"] == 200 and "pull" not in progress
        assert end["record"] == record.to_dict()
        kinds = [e["event"] for e in feed.events]
        assert kinds.index("start") < kinds.index("progress") < kinds.index("end")

    run(scenario())


def test_a_huge_request_is_not_parsed_on_the_loop(sock_path: Path) -> None:
    async def scenario() -> dict[str, Any]:
        publisher = await serving(sock_path)
        try:
            async with Collector(sock_path) as feed:
                builder = started_builder("h1", model="llama3.2:1b", prompt="x" * (2 * 1024 * 1024))
                publisher.interaction_started(builder)
                (start,) = await feed.wait_for(lambda e: e["event"] == "start")
        finally:
            publisher.close()
        return start

    start = run(scenario())
    assert start["model"] == "llama3.2:1b" and start["prompt"] == start["prompt_preview"] == "(2.0 MB request)"


def test_pull_progress_reports_layers(sock_path: Path) -> None:
    async def scenario() -> None:
        publisher = await serving(sock_path)
        try:
            async with Collector(sock_path) as feed:
                builder = started_builder("p1", model="mistral:7b", path="/api/pull")
                publisher.interaction_started(builder)
                builder.response_body(b'{"status":"pulling manifest"}\n' + pull_line(1024), time.time())
                publisher.interaction_progressed(builder)
                await feed.wait_for(lambda e: e["event"] == "progress" and e["pull"]["completed"] == 1024)
                builder.response_body(pull_line(3072), time.time())
                publisher.interaction_progressed(builder)
                (progress,) = await feed.wait_for(lambda e: e["event"] == "progress" and e["pull"]["completed"] == 3072)
        finally:
            publisher.close()
        assert progress["pull"] == {
            "status": "pulling abc",
            "completed": 3072,
            "total": 4096,
            "layers": [{"digest": "sha256:abc", "completed": 3072, "total": 4096}],
        }
        assert feed.of("start", "p1")[0]["kind"] == "pull"

    run(scenario())


def test_progress_is_coalesced_to_one_per_tick(sock_path: Path) -> None:
    """500 fragments in a burst of loop turns: progress events are bounded by ticks, not by fragments."""

    async def scenario() -> tuple[int, int, float]:
        publisher = await serving(sock_path)
        try:
            async with Collector(sock_path) as feed:
                builder = started_builder("c1")
                publisher.interaction_started(builder)
                began = time.monotonic()
                for _ in range(500):
                    builder.response_body(token_line("x"), time.time())
                    publisher.interaction_progressed(builder)
                    await asyncio.sleep(0)  # let the ticker run whenever it is due
                await feed.wait_for(lambda e: e["event"] == "progress" and e["tokens"] == 500)
                elapsed = time.monotonic() - began
        finally:
            publisher.close()
        return len(feed.of("progress", "c1")), 500, elapsed

    progress_events, fragments, elapsed = run(scenario())
    assert progress_events <= elapsed / INTERVAL + 2
    assert progress_events < fragments / 5


def test_the_response_tail_is_sent_at_most_once_a_second_and_never_left_stale(sock_path: Path) -> None:
    async def scenario() -> list[dict[str, Any]]:
        publisher = await serving(sock_path)
        try:
            async with Collector(sock_path) as feed:
                builder = started_builder("t1")
                publisher.interaction_started(builder)
                for word in ("one", " two", " three"):
                    builder.response_body(token_line(word), time.time())
                    publisher.interaction_progressed(builder)
                    await feed.wait_for(lambda e, w=word: e["event"] == "progress" and e["tokens"] >= 1)
                    await asyncio.sleep(INTERVAL * 3)
                # No more tokens: the tail still catches up with the text, once its second is up.
                await feed.wait_for(lambda e: e.get("response_tail") == "one two three", timeout_s=5)
        finally:
            publisher.close()
        return feed.of("progress", "t1")

    progress = run(scenario())
    tails = [e["time"] for e in progress if "response_tail" in e]
    assert len(progress) >= 3 and len(tails) < len(progress)
    assert all(later - earlier >= 0.99 for earlier, later in itertools.pairwise(tails))


def test_mid_stream_attach_gets_in_flight_first(sock_path: Path) -> None:
    async def scenario() -> None:
        publisher = await serving(sock_path)
        try:
            running = started_builder("m1", model="qwen3:0.6b")
            publisher.interaction_started(running)
            running.response_body(token_line("Hello"), time.time())
            publisher.interaction_progressed(running)
            # Nobody is attached: nothing is encoded yet.
            await asyncio.sleep(INTERVAL * 3)
            assert publisher.published == 0
            async with Collector(sock_path) as feed:
                await feed.wait_for(lambda e: e["event"] == "progress")
                first = [e["event"] for e in feed.events[:3]]
                assert first == ["hello", "start", "progress"], feed.events[:3]
                assert feed.events[0]["in_flight"] == 1
                assert feed.events[1]["id"] == "m1" and feed.events[1]["model"] == "qwen3:0.6b"
                assert feed.events[2]["tokens"] == 1
                view = LiveView()
                for event in feed.events:
                    view.apply(event)
                assert list(view.running) == ["m1"]
        finally:
            publisher.close()

    run(scenario())


def test_several_subscribers_see_the_same_events(sock_path: Path) -> None:
    async def scenario() -> None:
        publisher = await serving(sock_path)
        try:
            async with Collector(sock_path) as one, Collector(sock_path) as two:
                builder = started_builder("s1")
                publisher.interaction_started(builder)
                for word in ("a", "b", "c"):
                    builder.response_body(token_line(word), time.time())
                    publisher.interaction_progressed(builder)
                    await asyncio.sleep(INTERVAL * 2)
                publisher.interaction_finished(builder.finish(time.time()))
                await one.wait_for(lambda e: e["event"] == "end")
                await two.wait_for(lambda e: e["event"] == "end")
                assert len(publisher.subscribers) == 2
        finally:
            publisher.close()
        strip = lambda feed: [(e["event"], e.get("tokens")) for e in feed.events[1:]]  # noqa: E731
        assert strip(one) == strip(two)
        assert ("end", None) in strip(one)

    run(scenario())


def test_a_stuck_subscriber_loses_events_and_never_blocks(sock_path: Path) -> None:
    """A client that connects and never reads: its events are dropped and counted; a reader gets every one;
    once the stuck one reads again it is told how many it lost, and what is still running."""

    async def scenario() -> None:
        publisher = await serving(sock_path, buffer_limit=16 * 1024)
        stuck = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        stuck.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        stuck.setblocking(False)
        await asyncio.get_running_loop().sock_connect(stuck, str(sock_path))
        try:
            async with Collector(sock_path) as reader:
                builders = [started_builder(f"b{i}") for i in range(20)]
                for builder in builders:
                    publisher.interaction_started(builder)
                text = "y" * 100  # after 20 rounds every progress carries a 2 KB response tail
                for _round in range(40):
                    for builder in builders:
                        builder.response_body(token_line(text), time.time())
                        publisher.interaction_progressed(builder)
                    await asyncio.sleep(INTERVAL * 1.5)
                await reader.wait_for(lambda e: e["event"] == "progress" and e["id"] == "b19" and e["tokens"] == 40)
                assert publisher.dropped > 0
                laggard = next(s for s in publisher.subscribers if s.dropped)
                assert laggard.backlog() <= publisher.buffer_limit + 64 * 1024  # bounded: limit + one tick's events
                assert not reader.of("dropped")
                # Half the streams end while the stuck client is not reading.
                for builder in builders[:10]:
                    publisher.interaction_finished(builder.finish(time.time()))
                await reader.wait_for(lambda e: e["event"] == "end", count=10)
                # The stuck client now reads everything it has, then more events come.
                received = b""
                deadline = time.monotonic() + 10
                while b'"event":"dropped"' not in received and time.monotonic() < deadline:
                    try:
                        received += stuck.recv(1 << 20)
                    except BlockingIOError:
                        await asyncio.sleep(0.005)
                    for builder in builders[10:]:
                        builder.response_body(token_line("z"), time.time())
                        publisher.interaction_progressed(builder)
        finally:
            stuck.close()
            publisher.close()
        lines = [json.loads(line) for line in received.split(b"\n")[:-1]]
        notice = next(e for e in lines if e["event"] == "dropped")
        assert notice["count"] > 0 and sorted(notice["in_flight"]) == sorted(f"b{i}" for i in range(10, 20))
        view = LiveView()
        for event in lines:
            view.apply(event)
        assert sorted(view.running) == sorted(f"b{i}" for i in range(10, 20))  # the ended ten are gone
        assert view.dropped == notice["count"]

    run(scenario())


@pytest.mark.parametrize(("mode", "expect"), [(REDACT_HASH, "sha256:"), (REDACT_DROP, None)])
def test_prompts_honour_redaction(sock_path: Path, mode: str, expect: str | None) -> None:
    async def scenario() -> list[dict[str, Any]]:
        publisher = await serving(sock_path)
        try:
            async with Collector(sock_path) as feed:
                builder = started_builder("x1", prompt="secret plans")
                builder._redaction = mode  # as the addon's ollama_redact sets it
                publisher.interaction_started(builder)
                builder.response_body(token_line("classified"), time.time())
                publisher.interaction_progressed(builder)
                await feed.wait_for(lambda e: e["event"] == "progress")
        finally:
            publisher.close()
        return feed.events

    seen = run(scenario())
    text = json.dumps(seen)
    assert "secret" not in text and "classified" not in text
    start = next(e for e in seen if e["event"] == "start")
    if expect is None:
        assert start["prompt"] is None and start["prompt_preview"] is None
    else:
        assert start["prompt"].startswith(expect)


def test_socket_is_private_and_removed_on_close(sock_path: Path) -> None:
    async def scenario() -> None:
        publisher = await serving(sock_path)
        mode = stat.S_IMODE(sock_path.stat().st_mode)
        assert mode == 0o600 and stat.S_ISSOCK(sock_path.stat().st_mode)
        with pytest.raises(LiveError, match="another recorder"):
            await LivePublisher(sock_path).start()
        publisher.close()
        assert not sock_path.exists()

    run(scenario())


def test_a_stale_socket_file_is_replaced(sock_path: Path) -> None:
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(sock_path))
    stale.close()  # the file stays, nobody listens

    async def scenario() -> None:
        publisher = await serving(sock_path)
        async with Collector(sock_path):
            pass
        publisher.close()

    run(scenario())
