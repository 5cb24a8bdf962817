"""Item 4: ``server_cpu_ms`` and ``server_rss_max_mb`` against ``/proc`` of ``ollama serve`` and its runner child.

The proxy samples the server process tree (``ollama_resources=process``, every 50 ms). Around each request the test
reads ``/proc/PID/stat`` (CPU ticks) and ``/proc/PID/status`` (VmRSS, VmHWM) of the server and every child itself.
The first request loads the model: the runner child starts *during* it, so a sampler that only knew the processes
from before would miss most of the CPU time.
"""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass

import pytest

from tests.real_ollama.conftest import SHORT, ollama_client

pytestmark = [pytest.mark.real_ollama, pytest.mark.timeout(300)]

TICK_S = 1 / os.sysconf("SC_CLK_TCK")
QUICK = {**SHORT, "num_predict": 2}


@dataclass
class Tree:
    cpu_s: dict[int, float]
    rss_mb: float
    hwm_mb: float


def read_tree(pids: list[int]) -> Tree:
    cpu: dict[int, float] = {}
    rss = hwm = 0.0
    for pid in pids:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        cpu[pid] = (int(fields[11]) + int(fields[12])) * TICK_S  # utime, stime
        with open(f"/proc/{pid}/status") as f:
            status = dict(line.split(":", 1) for line in f if ":" in line)
        rss += int(status["VmRSS"].split()[0]) / 1024
        hwm += int(status["VmHWM"].split()[0]) / 1024
    return Tree(cpu, rss, hwm)


def cpu_used(before: Tree, after: Tree) -> float:
    """CPU seconds the tree used between the readings (a process new in ``after`` counts from zero)."""
    return sum(t - before.cpu_s.get(pid, 0.0) for pid, t in after.cpu_s.items())


def test_cpu_and_memory_per_request_match_proc_cold_and_warm(real_ollama_server, real_proxy) -> None:
    server = real_ollama_server(num_parallel=1, keep_alive="5m")
    proxy = real_proxy(server, options=["ollama_resources=process"])  # the default interval, 200 ms
    client = ollama_client(proxy.url)
    assert server.runner_pids() == []  # nothing loaded yet: the first request starts the runner
    for phase in ("cold", "warm"):
        word = f"{phase}{uuid.uuid4().hex[:8]}"
        before = read_tree([server.pid, *server.runner_pids()])
        # Short: the cold request must end well before the sampler's periodic full search for children (5 s).
        reply = client.generate(model=server.model, prompt=f"Say {word}", options=QUICK, stream=False)
        record = proxy.wait_for(word)[0]
        runners = server.runner_pids()
        after = read_tree([server.pid, *runners])
        assert runners, "the runner child serves the loaded model"
        if phase == "cold":
            assert reply.load_duration > reply.eval_duration / 10  # a real load happened
        used_ms = cpu_used(before, after) * 1000
        assert record.server_cpu_ms is not None and record.server_rss_max_mb is not None, phase
        # The record covers the request's span, the /proc readings a slightly wider window; 10 ms ticks and
        # 50 ms samples on both sides.
        tolerance = max(100.0, 0.15 * used_ms)
        assert abs(record.server_cpu_ms - used_ms) <= tolerance, (phase, record.server_cpu_ms, used_ms)
        # The largest sum of resident memory seen during the request: at least what is resident at its end
        # (the model stays loaded), at most the sum of each process's own peak.
        assert 0.9 * after.rss_mb <= record.server_rss_max_mb <= 1.05 * after.hwm_mb, (phase, record, after)
