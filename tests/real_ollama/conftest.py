"""The real-Ollama tier: official clients → a real ``mitmdump`` with the addon → a real ``ollama serve`` v0.24.0.

- ``real_ollama_server`` (``tests/conftest.py``) starts servers; every test here uses it, so every test carries
  the ``real_ollama`` marker and skips (naming ``make real-ollama``) without the built server or outside a
  loopback-only network namespace (``make real-ollama-test``).
- ``real_proxy(server, options=[...])``: a fresh mitmdump in reverse mode in front of ``server``, stopped at test end.
- ``ollama_client(url)`` / ``openai_client(url)``: the official clients with the tier's timeout.

Replies of a 135M model on a shared CPU take seconds: tests keep ``num_predict`` small and assert on what was
sent and received, never on speed.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ollama
import openai
import pytest

from analyzer.protocol.record import InteractionRecord
from tests.support.processes import Mitmdump
from tests.support.real_ollama import RealOllama
from tests.support.tcpdump import missing_live_capture, tcpdump

# A cold load plus a few tokens on a loaded 2-core machine: generous, and only a bound (nothing asserts speed).
CLIENT_TIMEOUT_S = 120.0
# Small replies keep the tier fast; still several chunks, so gaps and TTFT exist.
SHORT = {"num_predict": 8, "temperature": 0, "seed": 7}

RealProxyFactory = Callable[..., Mitmdump]


@pytest.fixture
def real_proxy(tmp_path: Path) -> Iterator[RealProxyFactory]:
    """``real_proxy(server, options=["name=value"])``: mitmdump with the addon in front of a real server."""
    started: list[Mitmdump] = []

    def start(server: RealOllama, options: Sequence[str] = ()) -> Mitmdump:
        n = len(started)
        proxy = Mitmdump(server.url, "127.0.0.1", tmp_path / f"log{n}", tmp_path / f"console{n}.txt", *options)
        started.append(proxy)
        return proxy.start()

    yield start
    for proxy in started:
        proxy.stop()


def ollama_client(url: str) -> ollama.Client:
    return ollama.Client(host=url, timeout=CLIENT_TIMEOUT_S)


def openai_client(url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=url + "/v1", api_key="ollama", max_retries=0, timeout=CLIENT_TIMEOUT_S)


@dataclass
class RecordedSession:
    """The scripted session through the proxy to one real server, its records, and (as root) a capture of both legs."""

    server: RealOllama
    proxy: Mitmdump
    received: list[Any]  # session.Received, in call order
    records: list[InteractionRecord]  # the proxy's records, in the same order
    capture: Path | None  # both legs (proxy port and server port), or None without tcpdump/root

    def pair(self, name: str) -> tuple[Any, InteractionRecord]:
        index = next(i for i, r in enumerate(self.received) if r.name == name)
        return self.received[index], self.records[index]


@pytest.fixture(scope="session")
def recorded_session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RecordedSession]:
    """Every call of ``session.CALLS`` by the official clients → mitmdump (resources sampled) → one real server."""
    from tests.conftest import real_ollama_unavailable
    from tests.real_ollama.session import CALLS, run_session

    reason = real_ollama_unavailable()
    if reason:
        pytest.skip(reason)
    base = tmp_path_factory.mktemp("real-session")
    with contextlib.ExitStack() as stack:
        server = stack.enter_context(RealOllama(base / "server", num_parallel=1))
        options = ["ollama_resources=process,host", "ollama_resources_interval=50"]
        proxy = Mitmdump(server.url, "127.0.0.1", base / "log", base / "console.txt", *options)
        stack.callback(proxy.stop)
        proxy.start()
        capture: Path | None = None
        with contextlib.ExitStack() as capturing:
            if missing_live_capture() is None:
                capture = base / "legs.pcap"
                capturing.enter_context(tcpdump(capture, f"tcp port {proxy.port} or tcp port {server.port}"))
            received = run_session(proxy.url, server.model)
            records = wait_for_count(proxy, len(CALLS))
        yield RecordedSession(server, proxy, received, records, capture)


def wait_for_count(
    proxy: Mitmdump, count: int, timeout_s: float = 30.0, *, by_start: bool = True
) -> list[InteractionRecord]:
    """The proxy's ``count`` records, once that many are written (bounded): by start time, or with
    ``by_start=False`` in the order they were written (a sequential session's call order: two quick requests in a
    row may start closer together than their starts' bound, so start time alone can swap them)."""
    deadline = time.monotonic() + timeout_s
    while True:
        records = proxy.records()
        if len(records) >= count or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert len(records) == count, f"{len(records)} records, expected {count}"
    return sorted(records, key=lambda r: r.started_at) if by_start else records
