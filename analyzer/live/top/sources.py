"""Where the dashboard's data comes from, besides the feed: the log directory, Ollama's API, the machine.

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
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit

import psutil

from analyzer.live.top.state import GpuStatus, MachineStatus, OllamaStatus
from analyzer.protocol.record import InteractionRecord, record_problem
from analyzer.resources.base import Sampler
from analyzer.resources.registry import Opened, Target, open_sources
from analyzer.resources.summary import machine_now
from analyzer.resources.timeline import Sample
from analyzer.store.log import LOG_SUFFIX
from analyzer.store.select import counts_as_traffic

HTTP_TIMEOUT_S = 1.5
OLLAMA_PROCESS_NAMES = ("ollama", "ollama.exe")
HISTORY_S = 3600.0
MAX_READ_BYTES = 64 * 1024 * 1024  # per poll: a huge backlog is read over several polls
INITIAL_TAIL_BYTES = 32 * 1024 * 1024  # a day's log can be huge: top starts from its last 32 MB


def default_ollama_url() -> str:
    """Where Ollama listens by the same rule as its clients: ``$OLLAMA_HOST`` or ``http://127.0.0.1:11434``."""
    host = os.environ.get("OLLAMA_HOST", "").strip()
    if not host:
        return "http://127.0.0.1:11434"
    if "://" not in host:
        host = "http://" + host
        if not urlsplit(host).port:
            host += ":11434"
    return host.rstrip("/")


class LogTail:
    """New records of the log directory since the last poll (the first poll: the last hour's)."""

    def __init__(self, log_dir: Path, include_replays: bool = False) -> None:
        self.log_dir = log_dir
        self.include_replays = include_replays
        self.offsets: dict[Path, int] = {}
        self._aligned: dict[Path, bool] = {}
        self.problem = ""

    def _files(self, now: float) -> list[Path]:
        if not self.log_dir.is_dir():
            return []
        days = {
            (datetime.fromtimestamp(now, UTC) - timedelta(seconds=back)).strftime("%Y-%m-%d")
            for back in (0.0, HISTORY_S)
        }
        return [self.log_dir / f"{day}{LOG_SUFFIX}" for day in sorted(days)]

    def poll(self, now: float | None = None) -> list[InteractionRecord]:
        now = now or time.time()
        records: list[InteractionRecord] = []
        self.problem = "" if self.log_dir.is_dir() else f"{self.log_dir}: no such directory yet"
        for path in self._files(now):
            try:
                with path.open("rb") as fh:
                    if path not in self.offsets:  # first look: only the end of a big file (the last hour's lines)
                        size = fh.seek(0, 2)
                        self.offsets[path] = max(size - INITIAL_TAIL_BYTES, 0)
                    fh.seek(self.offsets[path])
                    data = fh.read(MAX_READ_BYTES)
            except FileNotFoundError:
                continue
            except OSError as exc:
                self.problem = f"{path}: {exc.strerror or exc}"
                continue
            end = data.rfind(b"\n") + 1  # a line still being written is read next time
            start = 0
            if self.offsets[path] and not self._aligned.get(path):
                start = data.find(b"\n") + 1  # started inside a line: skip to the next one
            self._aligned[path] = True
            self.offsets[path] += end
            for line in data[start:end].splitlines():
                try:
                    item = json.loads(line)
                except ValueError:
                    continue
                if record_problem(item) is None and counts_as_traffic(item.get("source"), self.include_replays):
                    records.append(InteractionRecord.from_dict(item))
        return records


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
        self.port = urlsplit(ollama_url).port or 11434
        self._process: psutil.Process | None = None

    def _find_ollama(self) -> psutil.Process | None:
        try:
            for conn in psutil.net_connections(kind="tcp"):
                if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port == self.port and conn.pid:
                    return psutil.Process(conn.pid)
        except (psutil.AccessDenied, psutil.Error, OSError):
            pass
        for process in psutil.process_iter(["name"]):  # macOS needs root for other users' sockets
            if (process.info.get("name") or "").lower() in OLLAMA_PROCESS_NAMES and process.pid != os.getpid():
                return process
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
            status.note = f"no process listening on port {self.port}"
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
        opener: Callable[[str, Target, tuple[str, ...]], Opened] = open_sources,
    ) -> None:
        self.spec = spec
        self.interval_ms = interval_ms
        self.opener = opener  # the registry's open_sources; tests hand in samplers built on a stand-in NVML
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
