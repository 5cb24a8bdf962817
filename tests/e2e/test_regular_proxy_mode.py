"""The addon in mitmproxy's regular (forward) proxy mode, with clients that are given the proxy explicitly.

A forward proxy carries every website the client visits, and any site's ``/`` or ``/v1/...`` looks like an
Ollama endpoint, so there the addon records only port 11434 (Ollama's default) or the ``ollama_hosts``.
"""

from __future__ import annotations

import http.client
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import ollama
import pytest

from analyzer.emulator import EmulatorConfig, EmulatorThread, expected_text
from analyzer.protocol.record import InteractionRecord
from analyzer.recorder.process import ADDON_PATH, find_mitmdump, free_port, wait_for_port
from analyzer.store.log import read_log

pytestmark = pytest.mark.timeout(90)

MODEL = "llama3.2:1b"
ForwardProxy = Callable[..., tuple[str, Path]]


@pytest.fixture
def forward_proxy(tmp_path: Path) -> Iterator[ForwardProxy]:
    """``forward_proxy("name=value", ...)``: a regular-mode mitmdump with the addon; returns (proxy URL, log dir)."""
    processes: list[tuple[subprocess.Popen, Any]] = []

    def start(*settings: str) -> tuple[str, Path]:
        n = len(processes)
        port = free_port()
        log_dir = tmp_path / f"log{n}"
        console = (tmp_path / f"mitmdump{n}.log").open("wb")
        argv = [find_mitmdump(), "--listen-host", "127.0.0.1", "--listen-port", str(port), "-s", str(ADDON_PATH)]
        for setting in (f"ollama_log_dir={log_dir}", *settings):
            argv += ["--set", setting]
        process = subprocess.Popen(argv, stdout=console, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        processes.append((process, console))
        assert wait_for_port("127.0.0.1", port, 30, process), "mitmdump did not start"
        return f"http://127.0.0.1:{port}", log_dir

    yield start
    for process, console in processes:
        process.terminate()
        process.wait(10)
        console.close()


class _Website(BaseHTTPRequestHandler):
    """Any web server: an HTML home page, and JSON under /v1/ (as many REST APIs have)."""

    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        html = self.path == "/"
        body = b"<html><body>home</body></html>" if html else b'{"data": []}'
        self.send_response(200)
        self.send_header("Content-Type", "text/html" if html else "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def website() -> Iterator[int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Website)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


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
    assert b"home" in browse(proxy_url, f"http://127.0.0.1:{website}/")
    assert b"data" in browse(proxy_url, f"http://127.0.0.1:{website}/v1/models")
    # Recorded last: once its record is there, the website's flows (decided in responseheaders,
    # before their bodies reached us) are long past, so the log is complete.
    received = generate_through(proxy_url, emulator, "forward?")
    (record,) = wait_for_records(log_dir, 1)
    assert record.response_text == received and record.path == "/api/generate" and record.complete
    assert record.server.endswith(f":{emulator.port}")


def test_regular_mode_without_hosts_records_only_ollamas_default_port(emulator, website, forward_proxy) -> None:
    # 127.0.0.2 is loopback too on Linux, so this works even where a real Ollama holds 127.0.0.1:11434.
    default_port = EmulatorThread(EmulatorConfig(prefill_ms=2.0, token_ms=1.0), host="127.0.0.2", port=11434)
    try:
        default_port.start()
    except OSError as exc:
        pytest.skip(f"cannot listen on 127.0.0.2:11434: {exc}")
    try:
        proxy_url, log_dir = forward_proxy()
        assert b"home" in browse(proxy_url, f"http://127.0.0.1:{website}/")
        assert b"data" in browse(proxy_url, f"http://127.0.0.1:{website}/v1/models")
        generate_through(proxy_url, emulator, "elsewhere?")  # an Ollama API, but not on port 11434
        received = generate_through(proxy_url, default_port, "default port?")
        (record,) = wait_for_records(log_dir, 1)
        assert record.response_text == received and record.server == "127.0.0.2:11434"
    finally:
        default_port.stop()
