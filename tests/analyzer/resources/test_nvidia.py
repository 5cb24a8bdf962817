"""The NVML source against a stand-in for libnvidia-ml: the real binding's functions replaced, its types kept.

This machine has no NVIDIA GPU, so the C library is absent. The fake module below answers the calls the
sampler makes with the binding's own ctypes structures (``pynvml.c_nvmlSample_t``, ``c_nvmlMemory_t``,
``c_nvmlUtilization_t``) and units (utilisation samples in percent with µs timestamps, memory in bytes, power
in mW, energy in mJ), as nvidia-ml-py 13.x defines them. The real binding is also tried: it must say why not.
"""

from __future__ import annotations

import time
import types
from typing import Any

import pytest

pynvml = pytest.importorskip("pynvml")

from analyzer.resources.base import Unavailable  # noqa: E402
from analyzer.resources.nvidia import NvmlSampler, sample_values  # noqa: E402


class FakeNvml(types.SimpleNamespace):
    """One GPU whose counters the test moves forward."""

    def __init__(self, energy_supported: bool = True) -> None:
        super().__init__()
        self.NVML_GPU_UTILIZATION_SAMPLES = pynvml.NVML_GPU_UTILIZATION_SAMPLES
        self.buffer: list[tuple[int, int]] = []  # (timestamp µs, percent)
        self.energy_mj = 5_000_000
        self.power_mw = 250_000
        self.used_bytes = 6_000_000_000
        self.energy_supported = energy_supported
        self.shut = False

    def nvmlInit(self) -> None: ...
    def nvmlShutdown(self) -> None:
        self.shut = True

    def nvmlDeviceGetCount(self) -> int:
        return 1

    def nvmlSystemGetDriverVersion(self) -> str:
        return "580.65.06"

    def nvmlDeviceGetHandleByIndex(self, index: int) -> object:
        return ("gpu", index)

    def nvmlDeviceGetName(self, handle: object) -> str:
        return "NVIDIA GeForce RTX 4090"

    def nvmlDeviceGetTotalEnergyConsumption(self, handle: object) -> int:
        if not self.energy_supported:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_NOT_SUPPORTED)
        return self.energy_mj

    def nvmlDeviceGetPowerUsage(self, handle: object) -> int:
        return self.power_mw

    def nvmlDeviceGetMemoryInfo(self, handle: object) -> Any:
        memory = pynvml.c_nvmlMemory_t()
        memory.total, memory.used = 24_000_000_000, self.used_bytes
        memory.free = memory.total - memory.used
        return memory

    def nvmlDeviceGetSamples(self, handle: object, sampling_type: int, timestamp: int) -> tuple[int, list[Any]]:
        assert sampling_type == pynvml.NVML_GPU_UTILIZATION_SAMPLES
        fresh = [(ts, v) for ts, v in self.buffer if ts > timestamp]
        if not fresh:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_NOT_FOUND)
        samples = (pynvml.c_nvmlSample_t * len(fresh))()
        for slot, (ts, value) in zip(samples, fresh, strict=True):
            slot.timeStamp = ts
            slot.sampleValue.uiVal = value
        return pynvml.NVML_VALUE_TYPE_UNSIGNED_INT, samples[0 : len(fresh)]

    def nvmlDeviceGetUtilizationRates(self, handle: object) -> Any:
        rates = pynvml.c_nvmlUtilization_t()
        rates.gpu, rates.memory = 42, 10
        return rates


def test_reads_buffered_samples_memory_power_and_the_energy_counter() -> None:
    nvml = FakeNvml()
    sampler = NvmlSampler(nvml)
    nvml.buffer = [(1_000_000, 5)]  # buffered by the driver before the session: not the session's
    sampler.open()
    now = int(time.time() * 1e6)
    nvml.buffer += [(now + 1_000_000, 90), (now + 1_166_666, 100), (now + 1_333_333, 80)]
    nvml.energy_mj += 2_500  # 2.5 J since open
    first = sampler.read()
    assert first["gpu_util_pct"] == pytest.approx(90.0)
    assert first["gpu_mem_mb"] == pytest.approx(6000.0)
    assert first["power_w"] == pytest.approx(250.0)
    assert first["energy_j"] == pytest.approx(2.5)
    assert first["energy_source:nvml_counter"] == 1.0 and first["gpu_mem_source:nvml"] == 1.0
    nvml.buffer.append((now + 1_500_000, 20))  # only the newer sample counts next time
    assert sampler.read()["gpu_util_pct"] == pytest.approx(20.0)
    assert sampler.read()["gpu_util_pct"] == pytest.approx(42.0)  # nothing new buffered: the averaged rate
    assert sampler.details() == {"driver": "580.65.06", "gpus": ["NVIDIA GeForce RTX 4090"], "energy_counter": True}
    sampler.close()
    assert nvml.shut


def test_without_the_energy_counter_no_energy_is_claimed() -> None:
    sampler = NvmlSampler(FakeNvml(energy_supported=False))
    sampler.open()
    assert "energy_j" not in sampler.read()  # the timeline integrates power_w instead


def test_sample_values_reads_the_union_member_of_the_value_type() -> None:
    sample = pynvml.c_nvmlSample_t()
    sample.timeStamp = 7
    sample.sampleValue.dVal = 12.5
    assert sample_values(pynvml.NVML_VALUE_TYPE_DOUBLE, [sample]) == [(7, 12.5)]


def test_the_real_binding_says_why_it_cannot_start_here() -> None:
    sampler = NvmlSampler()
    try:
        sampler.open()
    except Unavailable as exc:
        assert "NVML" in str(exc)
    else:  # a machine with an NVIDIA driver: it works, and reads
        assert isinstance(sampler.read(), dict)
        sampler.close()
