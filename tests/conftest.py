"""Shared fixtures. Every test's Ollama server is the built-in emulator on loopback (see docs/emulator.md).

- ``emulator``: one running emulator per test module, with fast pacing (``FAST``); has ``.host``,
  ``.port``, ``.url`` and ``.config`` (pass the config to ``analyzer.emulator.expected_text``).
- ``emulator_factory``: ``emulator_factory(host="::1", token_ms=5, error_after=3, ...)`` starts one with
  custom ``EmulatorConfig`` fields; each is stopped when the test ends.
- ``real_ollama_server``: ``real_ollama_server(num_parallel=1, max_loaded_models=1, keep_alive="5m", max_queue=2,
  context_length=2048)`` starts a real ``ollama serve`` v0.24.0 (``tests/support/real_ollama.py``) with its own
  copy of the two models (``.model``, ``.twin_model``); ``.url``, ``.port``, ``.pid``, ``.runner_pids()``. Tests
  using it get the ``real_ollama`` marker; they skip (naming ``make real-ollama``) unless the server is built
  and the test runs in a loopback-only network namespace (``make real-ollama-test``).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from analyzer.emulator import EmulatorConfig, EmulatorThread
from tests.support import processes, real_ollama
from tests.support.defaults import FAST

EmulatorFactory = Callable[..., EmulatorThread]
RealOllamaFactory = Callable[..., real_ollama.RealOllama]
# Outside a loopback-only network namespace the real server refuses to run unless this is set (see docs/real-ollama.md).
ANY_NETWORK_ENV = "OLLAMA_WIRE_REAL_OLLAMA_ANY_NETWORK"


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


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test that starts a real Ollama carries the ``real_ollama`` marker (``-m "not real_ollama"`` skips them)."""
    for item in items:
        if "real_ollama_server" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.real_ollama)


def real_ollama_unavailable() -> str | None:
    """Why the real-Ollama tier cannot run here, or None."""
    reason = real_ollama.missing()
    if reason:
        return reason
    if not real_ollama.loopback_only() and not os.environ.get(ANY_NETWORK_ENV):
        return "real Ollama runs only in a loopback-only network namespace: `make real-ollama-test`"
    return None


@pytest.fixture
def real_ollama_server(tmp_path: Path) -> Iterator[RealOllamaFactory]:
    """Start real ``ollama serve`` processes: ``real_ollama_server(num_parallel=1, keep_alive="0", ...)``.

    Keywords become ``OLLAMA_*`` settings (``num_parallel``, ``max_loaded_models``, ``keep_alive``, ``max_queue``,
    ``context_length``, or any other). Each server and its runners are stopped when the test ends.
    """
    reason = real_ollama_unavailable()
    if reason:
        pytest.skip(reason)
    started: list[real_ollama.RealOllama] = []

    def start(**settings: Any) -> real_ollama.RealOllama:
        server = real_ollama.RealOllama(tmp_path / f"ollama{len(started)}", **settings)
        started.append(server)
        return server.start()

    yield start
    for server in started:
        server.stop()
