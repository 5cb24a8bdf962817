"""NVIDIA GPUs through NVML (``nvidia-ml-py``, imported as ``pynvml``).

Utilisation comes from the driver's buffered samples (``nvmlDeviceGetSamples`` with
``NVML_GPU_UTILIZATION_SAMPLES``: every sample newer than the last one read, averaged), not from
``nvmlDeviceGetUtilizationRates``, which is itself an average over 1/6 to 1 s depending on the product; that is
the fallback when the buffer has nothing new. Energy comes from ``nvmlDeviceGetTotalEnergyConsumption``
(millijoules since the driver loaded, Volta and newer), so energy between two instants is exact to the
counter's 20-100 ms update; power is ``nvmlDeviceGetPowerUsage`` (milliwatts, a 1 s average on Ampere+).
"""

from __future__ import annotations

import contextlib
import importlib
import time
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from analyzer.resources.base import ENERGY_SOURCE, GPU_MEM_SOURCE, MB, NVML_COUNTER, Unavailable, marker

# nvmlValueType_t -> the c_nvmlValue_t union member holding the value.
_VALUE_MEMBERS = {0: "dVal", 1: "uiVal", 2: "ulVal", 3: "ullVal", 4: "sllVal", 5: "siVal", 6: "usVal"}


@dataclass
class _Device:
    handle: Any
    name: str
    last_sample_us: int = 0
    energy_start_mj: int | None = None  # None: the counter is not supported on this GPU


def sample_values(value_type: int, samples: list[Any]) -> list[tuple[int, float]]:
    """``(timestamp µs, value)`` of ``nvmlDeviceGetSamples``' samples, read from the union member of ``value_type``."""
    member = _VALUE_MEMBERS.get(value_type, "uiVal")
    return [(int(s.timeStamp), float(getattr(s.sampleValue, member))) for s in samples]


class NvmlSampler:
    """Every NVIDIA GPU on the machine, summed (power, energy, memory) or averaged (utilisation).

    ``nvml`` is the binding module; by default ``pynvml`` from nvidia-ml-py, imported on ``open``. Any module with
    the same functions works (the tests pass one whose calls return the binding's own ctypes structures).
    """

    name = "nvidia"

    def __init__(self, nvml: ModuleType | Any | None = None) -> None:
        self._nvml: Any = nvml
        self._devices: list[_Device] = []
        self._driver = ""
        self._open = False

    def open(self) -> None:
        if self._nvml is None:
            try:
                self._nvml = importlib.import_module("pynvml")
            except ImportError:
                raise Unavailable("nvidia-ml-py is not installed (pip install nvidia-ml-py)") from None
        nvml = self._nvml
        try:
            nvml.nvmlInit()
        except Exception as exc:  # NVMLError_LibraryNotFound, _DriverNotLoaded, ...
            raise Unavailable(f"NVML cannot start: {exc} (no NVIDIA driver / libnvidia-ml on this machine)") from None
        self._open = True
        try:
            count = nvml.nvmlDeviceGetCount()
            if count == 0:
                raise Unavailable("NVML found no NVIDIA GPU")
            self._driver = _text(nvml.nvmlSystemGetDriverVersion())
            for index in range(count):
                handle = nvml.nvmlDeviceGetHandleByIndex(index)
                # utilisation samples the driver buffered before the session are not the session's
                device = _Device(handle, _text(nvml.nvmlDeviceGetName(handle)), last_sample_us=int(time.time() * 1e6))
                try:
                    device.energy_start_mj = int(nvml.nvmlDeviceGetTotalEnergyConsumption(handle))
                except Exception:  # NVMLError_NotSupported before Volta: power is integrated instead
                    device.energy_start_mj = None
                self._devices.append(device)
        except Unavailable:
            self.close()
            raise
        except Exception as exc:
            self.close()
            raise Unavailable(f"NVML: {exc}") from None

    def read(self) -> dict[str, float]:
        nvml = self._nvml
        utils: list[float] = []
        memory = power = energy = 0.0
        have_power = have_energy = have_memory = False
        for device in self._devices:
            util = self._utilisation(device)
            if util is not None:
                utils.append(util)
            try:
                memory += nvml.nvmlDeviceGetMemoryInfo(device.handle).used / MB
                have_memory = True
            except Exception:
                pass
            try:
                power += nvml.nvmlDeviceGetPowerUsage(device.handle) / 1000.0
                have_power = True
            except Exception:
                pass
            if device.energy_start_mj is not None:
                try:
                    counter = int(nvml.nvmlDeviceGetTotalEnergyConsumption(device.handle))
                    energy += (counter - device.energy_start_mj) / 1000
                    have_energy = True
                except Exception:
                    pass
        values: dict[str, float] = {}
        if utils:
            values["gpu_util_pct"] = sum(utils) / len(utils)
        if have_memory:
            values["gpu_mem_mb"] = memory
            values[marker(GPU_MEM_SOURCE, "nvml")] = 1.0
        if have_power:
            values["power_w"] = values["gpu_power_w"] = power
        if have_energy and all(d.energy_start_mj is not None for d in self._devices):
            values["energy_j"] = energy
            values[marker(ENERGY_SOURCE, NVML_COUNTER)] = 1.0
        return values

    def _utilisation(self, device: _Device) -> float | None:
        """Mean of the driver's buffered utilisation samples since the last read; the averaged rate otherwise."""
        nvml = self._nvml
        try:
            value_type, samples = nvml.nvmlDeviceGetSamples(
                device.handle, nvml.NVML_GPU_UTILIZATION_SAMPLES, device.last_sample_us
            )
            fresh = [(ts, v) for ts, v in sample_values(value_type, samples) if ts > device.last_sample_us]
            if fresh:
                device.last_sample_us = max(ts for ts, _ in fresh)
                return sum(v for _, v in fresh) / len(fresh)
        except Exception:  # NVMLError_NotFound: nothing new in the buffer; _NotSupported: no buffer
            pass
        try:
            return float(nvml.nvmlDeviceGetUtilizationRates(device.handle).gpu)
        except Exception:
            return None

    def details(self) -> dict[str, object]:
        return {
            "driver": self._driver,
            "gpus": [d.name for d in self._devices],
            "energy_counter": all(d.energy_start_mj is not None for d in self._devices),
        }

    def close(self) -> None:
        if self._open and self._nvml is not None:
            self._open = False
            self._devices = []
            with contextlib.suppress(Exception):
                self._nvml.nvmlShutdown()


def _text(value: object) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
