"""A real ``mitmdump -s addons/ollama_log.py`` in reverse mode in front of the emulator.

- ``proxy``: one mitmdump per test module in front of the module's ``emulator``; tests tell their
  records apart by a unique marker in the prompt (``proxy.wait_for(marker)``).
- ``mitmdump_factory``: ``mitmdump_factory(emulator, host="::1")`` starts a fresh one (for tests that
  stop it, e.g. SIGINT); each is stopped when the test ends.

mitmdump binds port 0 and the fixture reads the real port from its "listening at" line, so parallel
runs never race for a port. Every wait is a bounded poll; nothing here asserts on speed.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest

from analyzer.emulator import EmulatorThread
from analyzer.protocol.record import InteractionRecord
from analyzer.recorder.process import MitmdumpProcess
from analyzer.store.log import read_log

RECORD_TIMEOUT_S = 15.0


class Mitmdump(MitmdumpProcess):
    """The project's mitmdump runner plus what tests need: its own log directory and record polling."""

    def __init__(self, upstream: str, host: str, log_dir: Path, console_path: Path, *options: str) -> None:
        settings = dict(option.split("=", 1) for option in options)
        super().__init__(
            upstream, host=host, options={"ollama_log_dir": str(log_dir), **settings}, console_path=console_path
        )
        self.log_dir = log_dir

    @property
    def address(self) -> tuple[str, int]:
        return self.host, self.port

    def records(self) -> list[InteractionRecord]:
        """Every record in the log so far."""
        return read_log(self.log_dir)

    def wait_for(self, marker: str, count: int = 1, timeout_s: float = RECORD_TIMEOUT_S) -> list[InteractionRecord]:
        """Wait (bounded) until ``count`` records mention ``marker`` anywhere (prompt, model, ...); returns them.

        The addon writes a record in the ``response``/``error`` hook, which can run just after the client
        already has the last byte, so a test must poll rather than read the log once.
        """
        deadline = time.monotonic() + timeout_s
        found: list[InteractionRecord] = []
        while time.monotonic() < deadline:
            found = [r for r in self.records() if marker in r.to_json()]
            if len(found) >= count:
                return found
            time.sleep(0.05)
        raise AssertionError(f"{len(found)} of {count} records with {marker!r} after {timeout_s}s")


MitmdumpFactory = Callable[..., Mitmdump]


def _starter(base: Path, started: list[Mitmdump]) -> MitmdumpFactory:
    def start(upstream: EmulatorThread, host: str = "127.0.0.1", options: Sequence[str] = ()) -> Mitmdump:
        n = len(started)
        proxy = Mitmdump(upstream.url, host, base / f"log{n}", base / f"console{n}.txt", *options)
        started.append(proxy)
        return proxy.start()

    return start


@pytest.fixture
def mitmdump_factory(tmp_path: Path) -> Iterator[MitmdumpFactory]:
    """``mitmdump_factory(emulator, host="127.0.0.1", options=["name=value"])``: a fresh proxy, stopped at test end."""
    started: list[Mitmdump] = []
    yield _starter(tmp_path, started)
    for proxy in started:
        proxy.stop()


@pytest.fixture(scope="module")
def proxy(emulator: EmulatorThread, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mitmdump]:
    """One mitmdump with the addon in front of the module's emulator, shared by the module's tests."""
    started: list[Mitmdump] = []
    yield _starter(tmp_path_factory.mktemp("mitmdump"), started)(emulator)
    for running in started:
        running.stop()
