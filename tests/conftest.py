"""Shared fixtures. Every test's Ollama server is the built-in emulator on loopback (see docs/emulator.md).

- ``emulator``: one running emulator per test module, with fast pacing (``FAST``); has ``.host``,
  ``.port``, ``.url`` and ``.config`` (pass the config to ``analyzer.emulator.expected_text``).
- ``emulator_factory``: ``emulator_factory(host="::1", token_ms=5, error_after=3, ...)`` starts one with
  custom ``EmulatorConfig`` fields; each is stopped when the test ends.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from analyzer.emulator import EmulatorConfig, EmulatorThread
from tests.support import processes
from tests.support.defaults import FAST

EmulatorFactory = Callable[..., EmulatorThread]


@pytest.fixture(scope="module")
def emulator() -> Iterator[EmulatorThread]:
    """A running emulator on 127.0.0.1 (ephemeral port) with ``FAST`` pacing, shared by a test module."""
    with EmulatorThread(EmulatorConfig(**FAST)) as running:
        yield running


@pytest.fixture
def emulator_factory() -> Iterator[EmulatorFactory]:
    """Start emulators with custom options: ``emulator_factory(host="127.0.0.1", **EmulatorConfig fields)``."""
    started: list[EmulatorThread] = []

    def start(host: str = "127.0.0.1", **options: Any) -> EmulatorThread:
        running = processes.emulator(host, **options)
        running.start()
        started.append(running)
        return running

    yield start
    for running in started:
        running.stop()
