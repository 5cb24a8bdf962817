"""A real ``mitmdump -s addons/ollama_log.py`` in reverse mode in front of the emulator.

- ``proxy``: one mitmdump per test module in front of the module's ``emulator``; tests tell their
  records apart by a unique marker in the prompt (``proxy.wait_for(marker)``).
- ``mitmdump_factory``: ``mitmdump_factory(emulator, host="::1")`` starts a fresh one (for tests that
  stop it, e.g. SIGINT); each is stopped when the test ends.

mitmdump binds port 0 and the fixture reads the real port from its "listening at" line, so parallel
runs never race for a port. Every wait is a bounded poll; nothing here asserts on speed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest

from analyzer.emulator import EmulatorThread
from tests.support.processes import Mitmdump

__all__ = ["Mitmdump", "MitmdumpFactory"]

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
