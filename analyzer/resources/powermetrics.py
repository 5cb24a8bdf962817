"""Apple Silicon through ``powermetrics -f plist`` (root), run by the capture helper's fixed-argument subcommand.

``powermetrics`` writes one plist per sample, separated by NUL bytes. Keys read, as asitop and macmon's research
notes read them: ``gpu.idle_ratio`` (GPU active = 1 - idle), ``processor.cpu_power`` / ``gpu_power`` /
``ane_power`` (mW; newer macOS) or else ``processor.cpu_energy`` / ``gpu_energy`` / ``ane_energy`` (mJ over the
sample, divided by ``elapsed_ns``), ``processor.combined_power`` (mW), ``thermal_pressure``. Where a sample gives
energy (mJ over the sample), that is the energy: the sampler sums it into an ``energy_j`` counter
(``energy_source:powermetrics``) instead of letting the timeline re-integrate a power derived from it. The ANE
figure comes from the ``cpu_power`` sampler; the helper asks for ``cpu_power,gpu_power,ane_power`` where the OS
has them.
"""

from __future__ import annotations

import contextlib
import plistlib
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from analyzer.resources.base import ENERGY_SOURCE, POWERMETRICS, Unavailable, marker
from analyzer.resources.streamed import StreamedSampler

DEFAULT_HELPER = "/usr/local/libexec/ollama-wire/ollama-capture-helper"  # where `ollama-capture setup` installs it
HELPER_MAX_DURATION = 600


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def parse_powermetrics_plist(data: bytes | dict[str, Any]) -> dict[str, float] | None:
    """Metrics from one powermetrics plist sample, or None when it holds none."""
    sample = plistlib.loads(data.strip(b"\x00\n ")) if isinstance(data, bytes) else data
    if not isinstance(sample, dict):
        return None
    values: dict[str, float] = {}
    gpu: dict[str, Any] = sample["gpu"] if isinstance(sample.get("gpu"), dict) else {}
    idle = _number(gpu.get("idle_ratio"))
    if idle is not None:
        values["gpu_util_pct"] = max(0.0, min(100.0, (1.0 - idle) * 100.0))
    processor: dict[str, Any] = sample["processor"] if isinstance(sample.get("processor"), dict) else {}
    elapsed_s = (_number(sample.get("elapsed_ns", sample.get("elapsedNs"))) or 0.0) / 1e9
    powers: dict[str, float] = {}
    energy_mj: dict[str, float] = {}
    for part in ("cpu", "gpu", "ane"):
        millijoules = _number(processor.get(f"{part}_energy"))
        if millijoules is None and part == "gpu":
            millijoules = _number(gpu.get("gpu_energy"))
        if millijoules is not None:
            energy_mj[part] = millijoules
        milliwatts = _number(processor.get(f"{part}_power"))
        if milliwatts is None and part == "gpu":
            milliwatts = _number(gpu.get("gpu_power"))
        if milliwatts is None and millijoules is not None and elapsed_s > 0:
            milliwatts = millijoules / elapsed_s
        if milliwatts is not None:
            powers[part] = milliwatts / 1000.0
            values[f"{part}_power_w"] = powers[part]
    if powers:
        values["power_w"] = sum(powers.values())
    if energy_mj:
        values[SAMPLE_ENERGY] = sum(energy_mj.values()) / 1000.0
    return values or None


SAMPLE_ENERGY = "sample_energy_j"  # one sample's energy (J); the sampler sums these into the energy_j counter


def energy_counter(parse: Callable[[bytes], dict[str, float] | None]) -> Callable[[bytes], dict[str, float] | None]:
    """``parse`` with every sample's energy summed into a running ``energy_j`` counter (samples without energy add
    nothing and carry the counter on)."""
    total: float | None = None

    def counted(record: bytes) -> dict[str, float] | None:
        nonlocal total
        values = parse(record)
        if values is None:
            return None
        sample = values.pop(SAMPLE_ENERGY, None)
        if sample is not None:
            total = (total or 0.0) + sample
        if total is not None:
            values["energy_j"] = total
            values[marker(ENERGY_SOURCE, POWERMETRICS)] = 1.0
        return values

    return counted


def parse_powermetrics_stream(data: bytes) -> list[dict[str, float]]:
    """Every sample of a NUL-separated powermetrics plist stream (a cut last sample is skipped)."""
    readings = []
    for chunk in data.split(b"\x00"):
        if not chunk.strip():
            continue
        try:
            parsed = parse_powermetrics_plist(chunk)
        except Exception:  # plistlib.InvalidFileException, ExpatError: a cut sample
            continue
        if parsed:
            readings.append(parsed)
    return readings


class PowermetricsSampler(StreamedSampler):
    """``sudo -n HELPER powermetrics --interval MS --duration S``, restarted when the helper's duration is up."""

    name = "powermetrics"

    def __init__(
        self, interval_ms: int = 200, helper: str | Path = DEFAULT_HELPER, command: list[str] | None = None
    ) -> None:
        self._explicit = command is not None
        self.helper = Path(helper)
        interval = max(100, min(10_000, interval_ms))
        argv = command or [
            "sudo", "-n", str(self.helper), "powermetrics",
            "--interval", str(interval), "--duration", str(HELPER_MAX_DURATION),
        ]  # fmt: skip
        super().__init__(argv, energy_counter(parse_powermetrics_plist), separator=b"\x00")
        self._interval_ms = interval

    def open(self) -> None:
        if not self._explicit:
            if sys.platform != "darwin":
                raise Unavailable("powermetrics is macOS only")
            if not self.helper.exists():
                raise Unavailable(f"the capture helper {self.helper} is not installed (run ollama-capture setup)")
            if shutil.which("sudo") is None:
                raise Unavailable("sudo is not available")
        self.start(first_reading_timeout=max(5.0, 3 * self._interval_ms / 1000))

    def read(self) -> dict[str, float]:
        process = self._process
        if process is not None and process.poll() is not None and not self._explicit:
            self.close()  # the helper's bounded duration is up: start the next run
            with contextlib.suppress(Unavailable):
                self.start(first_reading_timeout=0)
        return super().read()

    def details(self) -> dict[str, object]:
        return {"command": " ".join(self.command), "readings": self.records, "unparsed": self.skipped}
