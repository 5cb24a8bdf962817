"""The sampler interface every resource source implements, and the metric names they share.

A sampler is opened once (``open()`` raises :class:`Unavailable` with the reason when the source cannot work on
this machine), then read at the sampling interval (``read()`` returns the metrics it sees now), then closed.
Metric names are fixed so the timeline and the attribution need not know the source:

======================  =========  ====================================================================
``gpu_util_pct``        gauge      GPU busy share over the interval that ended at the reading (0-100)
``gpu_freq_scaled_pct`` gauge      macmon ≤ 0.7's GPU figure: busy share scaled by frequency (not busy share)
``gpu_mem_mb``          gauge      GPU memory in use (MB = 10**6 bytes)
``power_w``             gauge      power of the measured devices (GPU board; Apple: CPU + GPU + ANE)
``gpu_power_w``         gauge      GPU power alone; ``cpu_power_w``, ``ane_power_w`` likewise
``energy_j``            counter    energy since the sampler opened (NVML's counter); else integrated power
``cpu_s``               counter    CPU seconds of the Ollama server process and its children
``rss_mb``              gauge      resident memory of the Ollama server process and its children
``host_mem_used_pct``   gauge      host memory in use; ``host_mem_pressure`` Linux PSI ``some avg10``
``ollama_vram_mb``      gauge      sum of ``size_vram`` over the models ``/api/ps`` lists as loaded
======================  =========  ====================================================================

Provenance rides along as marker metrics (value 1, kept in timeline files like any metric):
``energy_source:NAME`` says where ``energy_j`` came from — ``nvml_counter`` (NVML's energy counter),
``powermetrics`` (its per-sample energy, summed), ``macmon`` (macmon's power, integrated by the timeline),
``power_integral`` (another source's power, integrated by the timeline); ``gpu_mem_source:NAME`` where
``gpu_mem_mb`` came from (``nvml``). Attribution copies them into the records' ``energy_source`` and
``gpu_mem_source`` (``ollama_ps`` when GPU memory is ``/api/ps``'s ``size_vram``).
"""

from __future__ import annotations

from typing import Protocol

GAUGES = (
    "gpu_util_pct",
    "gpu_freq_scaled_pct",
    "gpu_mem_mb",
    "power_w",
    "gpu_power_w",
    "cpu_power_w",
    "ane_power_w",
    "rss_mb",
    "host_mem_used_pct",
    "host_mem_pressure",
    "ollama_vram_mb",
    "ollama_models",
)
COUNTERS = ("energy_j", "cpu_s")
ENERGY_SOURCE = "energy_source:"
GPU_MEM_SOURCE = "gpu_mem_source:"
NVML_COUNTER, POWERMETRICS, MACMON, POWER_INTEGRAL = "nvml_counter", "powermetrics", "macmon", "power_integral"


def marker(prefix: str, name: str) -> str:
    """The marker metric saying a value's provenance (``energy_source:nvml_counter``)."""
    return prefix + name


MB = 1_000_000


class Unavailable(Exception):
    """This source cannot sample on this machine; the message says why (one line, for ``resources --check``)."""


class Sampler(Protocol):
    """One resource source."""

    name: str

    def open(self) -> None:
        """Get ready to sample; raise :class:`Unavailable` with the reason when this source cannot work here."""

    def read(self) -> dict[str, float]:
        """The metrics this source sees now (metric name → value; a missing metric is simply absent)."""
        ...

    def details(self) -> dict[str, object]:
        """What ``resources --check`` shows besides the metrics: device names, process ids, versions."""
        ...

    def close(self) -> None:
        """Release what ``open`` took (library handles, child processes). Safe to call twice."""
