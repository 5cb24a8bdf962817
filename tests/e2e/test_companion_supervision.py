"""The feeds' companion process beside a real mitmdump: started with it, restarted when it dies or stalls, and
no record lost or written twice on the way (the proxy writes, flagged, what the companion could not)."""

from __future__ import annotations

import os
import signal
import time
import uuid
from collections import Counter
from typing import TYPE_CHECKING

import ollama
import psutil

from analyzer.protocol.record import FLAG_RESOURCES_UNAVAILABLE
from analyzer.recorder.companion_link import STALL_S

if TYPE_CHECKING:
    from analyzer.emulator import EmulatorThread
    from tests.e2e.conftest import MitmdumpFactory

CLIENT_TIMEOUT_S = 30.0


def _ask(url: str, prompts: list[str]) -> None:
    client = ollama.Client(host=url, timeout=CLIENT_TIMEOUT_S)
    for prompt in prompts:
        for text in (prompt, prompt + " again"):
            for _ in client.generate(model="qwen3:0.6b", prompt=text, stream=True):
                pass


def _wait(condition, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError(f"no {what} after {timeout_s} s")


def test_a_stalled_companion_is_replaced_and_every_record_is_written_once(
    emulator: EmulatorThread, mitmdump_factory: MitmdumpFactory
) -> None:
    proxy = mitmdump_factory(emulator, options=["ollama_resources=process", "ollama_resources_interval=50"])
    first = proxy.companion_pid
    assert first is not None and psutil.Process(first).ppid() == proxy.process.pid
    mark = uuid.uuid4().hex[:8]
    _ask(proxy.url, [f"{mark} before"])
    before = proxy.wait_for(f"{mark} before", count=2)
    assert all(FLAG_RESOURCES_UNAVAILABLE not in r.flags for r in before)

    os.kill(first, signal.SIGSTOP)  # alive but silent: records handed to it wait unacknowledged
    try:
        _ask(proxy.url, [f"{mark} stalled"])  # the traffic goes on meanwhile: the proxy never waits for it
        stalled = proxy.wait_for(f"{mark} stalled", count=2, timeout_s=STALL_S + 20)
        assert all(FLAG_RESOURCES_UNAVAILABLE in r.flags for r in stalled)  # written by the proxy, and it says so
        _wait(lambda: proxy.companion_pid not in (None, first), 20, "new companion")
    finally:
        if psutil.pid_exists(first):
            os.kill(first, signal.SIGCONT)
    assert not psutil.pid_exists(first) or psutil.Process(first).status() == psutil.STATUS_ZOMBIE

    _ask(proxy.url, [f"{mark} after"])
    after = proxy.wait_for(f"{mark} after", count=2)
    assert all(FLAG_RESOURCES_UNAVAILABLE not in r.flags for r in after)
    assert proxy.stop() == 0
    ids = Counter(r.id for r in proxy.records() if mark in r.to_json())
    assert len(ids) == 6 and set(ids.values()) == {1}, ids


def test_a_killed_companion_is_restarted(emulator: EmulatorThread, mitmdump_factory: MitmdumpFactory) -> None:
    proxy = mitmdump_factory(emulator, options=["ollama_resources=off"])  # the live feed alone needs it
    first = proxy.companion_pid
    assert first is not None
    os.kill(first, signal.SIGKILL)
    _wait(lambda: proxy.companion_pid not in (None, first), 20, "restarted companion")
    mark = uuid.uuid4().hex[:8]
    _ask(proxy.url, [mark])
    records = proxy.wait_for(mark, count=2)
    assert all(FLAG_RESOURCES_UNAVAILABLE not in r.flags for r in records)  # nothing asked for resources
    assert "the feeds' companion ended (status -9); restarting it" in proxy.console()


def test_with_every_feed_off_no_companion_runs(emulator: EmulatorThread, mitmdump_factory: MitmdumpFactory) -> None:
    proxy = mitmdump_factory(emulator, options=["ollama_resources=off", "ollama_live=off"])
    assert "every feed is off" in proxy.console() and proxy.companion_pid is None
    assert psutil.Process(proxy.process.pid).children() == []
    mark = uuid.uuid4().hex[:8]
    _ask(proxy.url, [mark])
    assert all(not r.flags for r in proxy.wait_for(mark, count=2))
