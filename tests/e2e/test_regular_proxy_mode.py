"""The addon in mitmproxy's regular (forward) proxy mode, with clients that are given the proxy explicitly."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import ollama
import pytest

from analyzer.emulator import expected_text
from analyzer.log import read_log
from analyzer.proxy_process import ADDON_PATH, find_mitmdump, free_port, wait_for_port


@pytest.fixture
def forward_proxy(tmp_path: Path):
    port = free_port()
    log_dir = tmp_path / "log"
    console = (tmp_path / "mitmdump.log").open("wb")
    process = subprocess.Popen(
        [
            find_mitmdump(),
            "--listen-host",
            "127.0.0.1",
            "--listen-port",
            str(port),
            "-s",
            str(ADDON_PATH),
            "--set",
            f"ollama_log_dir={log_dir}",
        ],
        stdout=console,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
    )
    try:
        assert wait_for_port("127.0.0.1", port, 30, process), "mitmdump did not start"
        yield f"http://127.0.0.1:{port}", log_dir
    finally:
        process.terminate()
        process.wait(10)
        console.close()


def test_regular_mode_records_like_reverse_mode(emulator, forward_proxy) -> None:
    proxy_url, log_dir = forward_proxy
    client = ollama.Client(host=emulator.url, proxy=proxy_url)  # explicit proxy: env proxies skip loopback
    body = {"model": "llama3.2:1b", "prompt": "forward?"}
    received = "".join(part.response or "" for part in client.generate(**body, stream=True))
    assert received == expected_text("generate", body, emulator.config)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not read_log(log_dir):
        time.sleep(0.05)
    (record,) = read_log(log_dir)
    assert record.response_text == received and record.path == "/api/generate" and record.complete
    assert record.server.endswith(f":{emulator.port}")
