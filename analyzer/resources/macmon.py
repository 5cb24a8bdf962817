"""Apple Silicon through ``macmon pipe`` (no root): one JSON object per line, at ``-i`` milliseconds.

Fields read (macmon 0.8: ``gpu_active_ratio`` 0-1, powers in watts, ``memory.ram_usage`` in bytes). Up to 0.7 the
GPU figure is ``gpu_usage: [freq_mhz, ratio]`` (0.8 still prints it as a deprecated alias), whose ratio is the
active residency *scaled by the frequency* (busy share × freq / max freq): not the busy share that ``gpu_util_pct``
means, so it is kept as ``gpu_freq_scaled_pct``, a different quantity, and ``gpu_util_pct`` stays absent. Energy
is macmon's power integrated by the timeline (marked ``energy_source:macmon``).
"""

from __future__ import annotations

import json
import shutil
import sys

from analyzer.resources.base import ENERGY_SOURCE, MACMON, Unavailable, marker
from analyzer.resources.streamed import StreamedSampler


def parse_macmon_line(line: bytes | str) -> dict[str, float] | None:
    """Metrics from one ``macmon pipe`` line, or None when it is not a macmon reading."""
    data = json.loads(line)
    if not isinstance(data, dict):
        return None
    values: dict[str, float] = {}
    ratio = data.get("gpu_active_ratio")
    if isinstance(ratio, int | float) and not isinstance(ratio, bool):
        values["gpu_util_pct"] = float(ratio) * 100.0
    else:
        usage = data.get("gpu_usage")
        if isinstance(usage, list) and len(usage) == 2 and isinstance(usage[1], int | float):
            values["gpu_freq_scaled_pct"] = float(usage[1]) * 100.0
    powers = {}
    for key, name in (("cpu_power", "cpu_power_w"), ("gpu_power", "gpu_power_w"), ("ane_power", "ane_power_w")):
        value = data.get(key)
        if isinstance(value, int | float):
            values[name] = powers[key] = float(value)
    if powers:
        values["power_w"] = sum(powers.values())
        values[marker(ENERGY_SOURCE, MACMON)] = 1.0
    memory = data.get("memory")
    if isinstance(memory, dict) and isinstance(memory.get("ram_usage"), int | float):
        total = memory.get("ram_total")
        if isinstance(total, int | float) and total > 0:
            values["host_mem_used_pct"] = 100.0 * memory["ram_usage"] / total
    return values or None


class MacmonSampler(StreamedSampler):
    """``macmon pipe -i INTERVAL`` as a child process; the newest line is the reading."""

    name = "macmon"

    def __init__(self, interval_ms: int = 200, command: list[str] | None = None) -> None:
        self._explicit = command is not None
        super().__init__(command or ["macmon", "pipe", "-i", str(max(100, interval_ms))], parse_macmon_line)
        self._interval_ms = interval_ms

    def open(self) -> None:
        if not self._explicit:
            if sys.platform != "darwin":
                raise Unavailable("macmon reads Apple Silicon counters: macOS only")
            found = shutil.which("macmon")
            if found is None:
                raise Unavailable("macmon is not installed (brew install macmon)")
            self.command[0] = found
        self.start(first_reading_timeout=max(3.0, 3 * self._interval_ms / 1000))

    def details(self) -> dict[str, object]:
        return {"command": " ".join(self.command), "readings": self.records, "unparsed": self.skipped}


__all__ = ["MacmonSampler", "parse_macmon_line"]
