"""The addon in mitmproxy's regular (forward) proxy mode, with clients that are given the proxy explicitly.

A forward proxy carries every website the client visits, and any site's ``/`` or ``/v1/...`` looks like an
Ollama endpoint, so there the addon records only port 11434 (Ollama's default) or the ``ollama_hosts``.
"""

from __future__ import annotations

import http.client
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import ollama
import pytest

from analyzer.emulator import EmulatorThread, expected_text
from analyzer.protocol.record import InteractionRecord
from analyzer.store.log import read_log
from tests.support import processes
from tests.support.defaults import MODEL, OLLAMA_PORT
from tests.support.processes import Mitmdump

pytestmark = pytest.mark.timeout(90)

ForwardProxy = Callable[..., tuple[str, Path]]


@pytest.fixture
def forward_proxy(tmp_path: Path) -> Iterator[ForwardProxy]:
    """``forward_proxy("name=value", ...)``: a regular-mode mitmdump with the addon; returns (proxy URL, log dir)."""
    started: list[Mitmdump] = []

    def start(*settings: str) -> tuple[str, Path]:
        n = len(started)
        proxy = Mitmdump(None, "127.0.0.1", tmp_path / f"log{n}", tmp_path / f"mitmdump{n}.log", *settings)
        started.append(proxy)
        proxy.start()
        return proxy.url, proxy.log_dir

    yield start
    for proxy in started:
        proxy.stop()


@pytest.fixture
def website() -> Iterator[int]:
    """Any web server that is not named as Ollama: here a second emulator (``/`` and ``/v1/models`` answer)."""
    with processes.emulator() as server:
        yield server.port


def browse(proxy_url: str, url: str) -> bytes:
    """GET an absolute URL through the proxy, as ``curl -x PROXY URL`` does."""
    proxy = proxy_url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(proxy[0], int(proxy[1]), timeout=30)
    try:
        conn.request("GET", url)
        response = conn.getresponse()
        assert response.status == 200
        return response.read()
    finally:
        conn.close()


def generate_through(proxy_url: str, server: EmulatorThread, prompt: str) -> str:
    client = ollama.Client(host=server.url, proxy=proxy_url)  # explicit proxy: env proxies skip loopback
    body = {"model": MODEL, "prompt": prompt}
    received = "".join(part.response or "" for part in client.generate(**body, stream=True))
    assert received == expected_text("generate", body, server.config)
    return received


def wait_for_records(log_dir: Path, count: int) -> list[InteractionRecord]:
    """The addon writes in the response hook, possibly just after the client has the last byte: poll (bounded)."""
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and len(read_log(log_dir)) < count:
        time.sleep(0.05)
    return read_log(log_dir)


def test_regular_mode_records_the_named_host_only(emulator, website, forward_proxy) -> None:
    proxy_url, log_dir = forward_proxy(f"ollama_hosts=127.0.0.1:{emulator.port}")
    assert browse(proxy_url, f"http://127.0.0.1:{website}/") == b"Ollama is running"
    assert json.loads(browse(proxy_url, f"http://127.0.0.1:{website}/v1/models"))["object"] == "list"
    # Recorded last: once its record is there, the website's flows (decided in responseheaders,
    # before their bodies reached us) are long past, so the log is complete.
    received = generate_through(proxy_url, emulator, "forward?")
    (record,) = wait_for_records(log_dir, 1)
    assert record.response_text == received and record.path == "/api/generate" and record.complete
    assert record.server.endswith(f":{emulator.port}")


def test_regular_mode_without_hosts_records_only_ollamas_default_port(emulator, website, forward_proxy) -> None:
    # 127.0.0.2 is loopback too on Linux, so this works even where a real Ollama holds 127.0.0.1:11434.
    default_port = processes.emulator("127.0.0.2", port=OLLAMA_PORT)
    try:
        default_port.start()
    except OSError as exc:
        pytest.skip(f"cannot listen on 127.0.0.2:11434: {exc}")
    try:
        proxy_url, log_dir = forward_proxy()
        assert browse(proxy_url, f"http://127.0.0.1:{website}/") == b"Ollama is running"
        assert json.loads(browse(proxy_url, f"http://127.0.0.1:{website}/v1/models"))["object"] == "list"
        generate_through(proxy_url, emulator, "elsewhere?")  # an Ollama API, but not on port 11434
        received = generate_through(proxy_url, default_port, "default port?")
        (record,) = wait_for_records(log_dir, 1)
        assert record.response_text == received and record.server == f"127.0.0.2:{OLLAMA_PORT}"
    finally:
        default_port.stop()
