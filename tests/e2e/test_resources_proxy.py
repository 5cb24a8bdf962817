"""Resource columns end to end: the emulator as a real server *process* (so its CPU time and memory are real),
a real mitmdump with the addon in front of it, the official ollama client, overlapping requests.

On this machine there is no GPU and no Mac: the process, host and /api/ps sources are what samples; the GPU and
power sources must say why they are unavailable and change nothing.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import types
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import ollama
import psutil
import pytest

from analyzer.protocol.record import RESOURCE_COLUMNS
from analyzer.recorder.process import MitmdumpProcess, free_port, wait_for_port

if TYPE_CHECKING:
    from tests.e2e.conftest import MitmdumpFactory

CLIENT_TIMEOUT_S = 30.0


@pytest.fixture
def server() -> Iterator[types.SimpleNamespace]:
    """``ollama-wire emulate`` as a child process, paced so requests last long enough to be sampled."""
    port = free_port()
    argv = [sys.executable, "-c", "from analyzer.cli.main import cli; cli()", "emulate", "--port", str(port)]
    process = subprocess.Popen(
        [*argv, "--prefill-ms", "80", "--token-ms", "10", "--tokens", "150"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        assert wait_for_port("127.0.0.1", port, 20.0, process), "emulator did not start"
        yield types.SimpleNamespace(
            url=f"http://127.0.0.1:{port}", pid=process.pid, process=psutil.Process(process.pid)
        )
    finally:
        process.terminate()
        process.wait(timeout=10)


def _cpu_s(proc: psutil.Process) -> float:
    times = proc.cpu_times()
    return times.user + times.system


def test_overlapping_requests_share_the_server_cpu(
    server: types.SimpleNamespace, mitmdump_factory: MitmdumpFactory
) -> None:
    proxy = mitmdump_factory(
        server, options=["ollama_resources=process,host,ollama_ps", "ollama_resources_interval=50"]
    )
    client = ollama.Client(host=proxy.url, timeout=CLIENT_TIMEOUT_S)
    client.generate(model="llama3.2:1b", prompt="warm-up resources-e2e", stream=False)
    proxy.wait_for("warm-up resources-e2e")
    before = _cpu_s(server.process)

    def ask(prompt: str, tokens: int) -> None:
        for _ in client.generate(model="llama3.2:1b", prompt=prompt, stream=True, options={"num_predict": tokens}):
            pass

    long = threading.Thread(target=ask, args=("long resources-e2e", 150))
    short = threading.Thread(target=ask, args=("short resources-e2e", 10))
    long.start()
    short.start()
    long.join(CLIENT_TIMEOUT_S)
    short.join(CLIENT_TIMEOUT_S)
    used_ms = (_cpu_s(server.process) - before) * 1000
    rss_mb = server.process.memory_info().rss / 1e6

    records = {r.prompt: r for r in proxy.wait_for("resources-e2e", count=3)}
    first, second = records["long resources-e2e"], records["short resources-e2e"]
    for record in (first, second):
        assert record.server_cpu_ms is not None and record.server_cpu_ms >= 0
        assert record.server_rss_max_mb is not None and 0.5 * rss_mb < record.server_rss_max_mb < 2 * rss_mb
        assert record.energy_j is None and record.gpu_util_mean_pct is None and record.power_mean_w is None
        assert record.gpu_mem_max_mb is not None  # the emulator's /api/ps size_vram
    # Shares never add up to more than the server used (plus the tail extrapolated past the newest sample).
    assert first.server_cpu_ms + second.server_cpu_ms <= used_ms * 1.25 + 10
    # The long request ran alone most of the time: it gets the larger share. (/proc counts CPU in 10 ms ticks,
    # so the figures are coarse; the server did measurably work.)
    assert first.server_cpu_ms >= second.server_cpu_ms and first.server_cpu_ms > 0
    console = proxy.console()
    assert "ollama_resources: sampling process, host, ollama_ps every 50 ms" in console


def test_off_leaves_the_columns_empty(server: types.SimpleNamespace, mitmdump_factory: MitmdumpFactory) -> None:
    proxy = mitmdump_factory(server, options=["ollama_resources=off"])
    ollama.Client(host=proxy.url, timeout=CLIENT_TIMEOUT_S).generate(model="llama3.2:1b", prompt="off resources-e2e")
    (record,) = proxy.wait_for("off resources-e2e")
    assert record.complete
    assert all(getattr(record, name) is None for name in RESOURCE_COLUMNS)


def test_auto_without_gpu_or_mac_still_records(
    server: types.SimpleNamespace, mitmdump_factory: MitmdumpFactory
) -> None:
    proxy = mitmdump_factory(server, options=["ollama_resources_interval=50"])
    ollama.Client(host=proxy.url, timeout=CLIENT_TIMEOUT_S).generate(model="llama3.2:1b", prompt="auto resources-e2e")
    (record,) = proxy.wait_for("auto resources-e2e")
    assert record.complete and record.eval_count
    if "unavailable: nvidia" in proxy.console():
        assert record.energy_j is None and record.joules_per_token is None


BAD_SETTINGS = [("ollama_resources", "gpu"), ("ollama_resources_interval", "5"), ("ollama_resources_interval", "abc")]


@pytest.mark.parametrize(("name", "value"), BAD_SETTINGS)
def test_a_bad_setting_stops_mitmdump_with_one_line(tmp_path: Path, name: str, value: str) -> None:
    proxy = MitmdumpProcess(
        f"http://127.0.0.1:{free_port()}",  # never contacted
        options={"ollama_log_dir": str(tmp_path / "log"), name: value},
        console_path=tmp_path / "console.txt",
    )
    with proxy.console_path.open("wb") as console:
        process = subprocess.Popen(proxy.command(), stdout=console, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        try:
            returncode = process.wait(60)  # a bound, not a speed check: it must exit on its own
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
    output = proxy.console()
    lines = [
        line for line in output.splitlines() if f"ollama_log: {name}=" in line
    ]  # the recorder checks every feed's options
    assert returncode != 0, output
    assert len(lines) == 1 and f"{name}={value}" in lines[0], output
    assert "Traceback" not in output
