"""The machine-now figures a dashboard panel shows."""

from __future__ import annotations

import pytest

from analyzer.resources.summary import machine_line, machine_now
from analyzer.resources.timeline import Sample


def test_newest_gauges_and_counter_rates() -> None:
    samples = [
        Sample(0.0, {"cpu_s": 10.0, "rss_mb": 4000.0, "gpu_util_pct": 50.0}),
        Sample(0.5, {"cpu_s": 10.6, "rss_mb": 4100.0, "gpu_util_pct": 87.0, "gpu_mem_mb": 6000.0, "power_w": 241.0}),
        Sample(0.7, {"host_mem_used_pct": 63.2}),  # another source's newer reading
    ]
    now = machine_now(samples)
    assert now["server_cpu_cores"] == pytest.approx(1.2)
    assert now["gpu_util_pct"] == 87.0 and now["host_mem_used_pct"] == 63.2
    assert machine_line(samples) == "GPU 87% 6.0 GB · 241 W · ollama 1.20 cores 4.1 GB · host mem 63%"


def test_nothing_sampled() -> None:
    assert machine_line([]) == "no resource samples"
    assert machine_line([Sample(0, {"rss_mb": 20.0})]) == "ollama 0.0 GB"
