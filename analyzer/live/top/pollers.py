"""What the dashboard polls, besides the feed and the log (``store.tail.LogFollower``): Ollama's API, the machine.

Plain blocking functions and classes (no Textual): the app runs them in thread workers, ``--once`` calls them
directly. Each is bounded (timeouts, at most the last hour of the log) and turns failures into a status.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from urllib.parse import urlsplit

import psutil

from analyzer.live.top.state import GpuStatus, MachineStatus, OllamaStatus
from analyzer.protocol.endpoints import OLLAMA_PORT, ollama_url
from analyzer.resources.base import Sampler
from analyzer.resources.process import find_listener
from analyzer.resources.registry import Opened, Target, open_samplers
from analyzer.resources.summary import machine_now
from analyzer.resources.timeline import Sample

HTTP_TIMEOUT_S = 1.5


def default_ollama_url() -> str:
    """Where Ollama listens by the same rule as its clients: ``$OLLAMA_HOST`` or ``http://127.0.0.1:11434``."""
    return ollama_url(os.environ.get("OLLAMA_HOST", ""))


def _get_json(url: str) -> object:
    with urllib.request.urlopen(url, timeout=HTTP_TIMEOUT_S) as response:
        return json.loads(response.read(4 * 1024 * 1024))


def ask_ollama(url: str) -> OllamaStatus:
    """``/api/ps`` and ``/api/version`` of the server at ``url``; unreachable is a status, not an exception."""
    status = OllamaStatus(url, checked_at=time.time())
    try:
        ps = _get_json(f"{url}/api/ps")
    except (OSError, ValueError, urllib.error.URLError) as exc:
        status.reachable = False
        status.error = str(getattr(exc, "reason", exc))
        return status
    status.reachable = True
    models = ps.get("models") if isinstance(ps, dict) else None
    status.models = [m for m in models if isinstance(m, dict)] if isinstance(models, list) else []
    try:
        version = _get_json(f"{url}/api/version")
        status.version = str(version.get("version", "")) if isinstance(version, dict) else ""
    except (OSError, ValueError, urllib.error.URLError):
        pass
    return status


class MachineSampler:
    """Memory and CPU of the machine and of the Ollama server process (found by its listening port)."""

    def __init__(self, ollama_url: str) -> None:
        self.port = urlsplit(ollama_url).port or OLLAMA_PORT
        self._process: psutil.Process | None = None
        self._missing = ""

    def _find_ollama(self) -> psutil.Process | None:
        pid, how = find_listener(self.port, psutil)
        if pid is None:
            self._missing = how
            return None
        try:
            return psutil.Process(pid)
        except psutil.Error as exc:
            self._missing = f"the process listening on port {self.port} went away ({exc})"
            return None

    def sample(self) -> MachineStatus:
        memory = psutil.virtual_memory()
        status = MachineStatus(
            memory_used=memory.total - memory.available,
            memory_total=memory.total,
            cpu_percent=psutil.cpu_percent(interval=None),
            cpus=psutil.cpu_count() or 1,
        )
        process = self._process
        if process is None:
            process = self._process = self._find_ollama()
            if process is not None:
                process.cpu_percent(interval=None)  # primes the next reading
        if process is None:
            status.note = self._missing
            return status
        try:
            with process.oneshot():
                status.ollama_pid = process.pid
                status.ollama_name = process.name()
                status.ollama_rss = process.memory_info().rss
                status.ollama_cpu_percent = process.cpu_percent(interval=None)
        except psutil.Error:
            self._process = None
            status.note = f"server process on port {self.port} went away"
        return status


GPU_SOURCES = "nvidia,macmon"  # the resource samplers that see a GPU (NVML; Apple Silicon without root)


class GpuReader:
    """GPU utilisation, memory and power from the resource samplers (analyzer.resources), or why there are none.

    Blocking (opening NVML or starting macmon takes a moment): the app calls it from a thread worker.
    """

    def __init__(
        self,
        spec: str = GPU_SOURCES,
        interval_ms: int = 2000,
        opener: Callable[[str, Target, tuple[str, ...]], Opened] = open_samplers,
    ) -> None:
        self.spec = spec
        self.interval_ms = interval_ms
        self.opener = opener  # the registry's open_samplers; tests hand in samplers built on a stand-in NVML
        self._samplers: list[Sampler] = []

    def open(self) -> GpuStatus:
        opened = self.opener(self.spec, Target(interval_ms=self.interval_ms), ())
        self._samplers = opened.samplers
        if self._samplers:
            return GpuStatus(available=True, source=",".join(s.name for s in self._samplers))
        preferred = "macmon" if sys.platform == "darwin" else "nvidia"
        reason = opened.unavailable.get(preferred) or next(iter(opened.unavailable.values()), "no GPU source")
        return GpuStatus(available=False, reason=reason.split(" (", 1)[0])  # one short line: no hint in brackets

    def read(self) -> GpuStatus:
        values: dict[str, float] = {}
        for sampler in self._samplers:
            try:
                values.update(sampler.read())
            except Exception:  # a failing read is a gap, never the end of the panel
                continue
        now = machine_now([Sample(time.time(), values)])
        return GpuStatus(
            available=True,
            source=",".join(s.name for s in self._samplers),
            util_pct=now["gpu_util_pct"],
            mem_mb=now["gpu_mem_mb"],
            power_w=values.get("gpu_power_w", now["power_w"]),
        )

    def close(self) -> None:
        for sampler in self._samplers:
            with contextlib.suppress(Exception):
                sampler.close()
        self._samplers = []
