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

from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import ollama
import openai
import pytest

from tests.support.processes import Mitmdump
from tests.support.real_ollama import RealOllama

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
