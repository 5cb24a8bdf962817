"""The Ollama server process, found by the port it listens on, with its runner children (psutil).

``ollama serve`` starts one ``ollama runner`` child per loaded model; the model's work happens there. Children are
looked for on every read, so a runner that lives 3 s (a load that fails, a short-lived model) is counted. CPU time
is the server's own, plus what its exited and reaped children used (the kernel adds it to the parent's
``children_user``/``children_system``), plus the live children's: a runner that exits keeps its CPU time, and the
counter never goes backwards. Resident memory is summed over the ones alive now. Also the host's memory: the
share in use and, on Linux, the kernel's pressure stall figure (``/proc/pressure/memory``, ``some avg10``).
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from analyzer.protocol.endpoints import OLLAMA_PORT
from analyzer.resources.base import MB, Unavailable

PSI_MEMORY = Path("/proc/pressure/memory")
REFIND_EVERY = 25  # reads between full searches for runner children (and for a restarted server)
PROC = Path("/proc")


def _psutil() -> Any:
    try:
        return importlib.import_module("psutil")
    except ImportError:
        raise Unavailable("psutil is not installed (pip install psutil)") from None


def find_listener(port: int, psutil: Any | None = None) -> tuple[int | None, str]:
    """(pid, how) of the process listening on TCP ``port`` (any local address); pid None with the reason."""
    psutil = psutil or _psutil()
    listen = psutil.CONN_LISTEN
    try:
        connections = psutil.net_connections(kind="tcp")
    except psutil.AccessDenied:  # macOS without root: ask our own processes one by one
        connections = []
        for proc in psutil.process_iter(["pid"]):
            try:
                for conn in proc.net_connections(kind="tcp"):
                    if conn.status == listen and conn.laddr and conn.laddr.port == port:
                        return proc.pid, "own process"
            except (psutil.AccessDenied, psutil.NoSuchProcess):
                continue
        return None, f"no process of this user listens on port {port} (others' sockets need root to see)"
    owners = [c for c in connections if c.status == listen and c.laddr and c.laddr.port == port]
    for conn in owners:
        if conn.pid is not None:
            return int(conn.pid), "listening socket"
    if owners:
        # Another user's socket (Linux packages run `ollama serve` as user ollama): its owner cannot be read
        # from the socket, but CPU time and memory of any process can. One `ollama serve` is taken as it.
        servers = []
        for proc in psutil.process_iter(["name", "cmdline"]):
            cmdline = proc.info.get("cmdline") or []
            if proc.info.get("name") == "ollama" and "serve" in cmdline:
                servers.append(proc.pid)
        if len(servers) == 1:
            return servers[0], "another user's socket; the one `ollama serve` process"
        return None, f"port {port} is listened on by another user's process (run as that user, or as root)"
    return None, f"nothing listens on port {port} (is Ollama running?)"


class ProcessSampler:
    """CPU time and resident memory of the server listening on ``port`` and its children."""

    name = "process"

    def __init__(self, port: int = OLLAMA_PORT) -> None:
        self.port = port
        self.pid: int | None = None
        self._psutil: Any = None
        self._procs: dict[int, Any] = {}
        self._cpu_s = 0.0  # the counter as last reported: never lower
        self._reads = 0
        self.found_by = ""

    def open(self) -> None:
        self._psutil = _psutil()
        pid, how = find_listener(self.port, self._psutil)
        if pid is None:
            raise Unavailable(how)
        self.found_by = how
        self._attach(pid)

    def _attach(self, pid: int) -> None:
        psutil = self._psutil
        try:
            server = psutil.Process(pid)
            self._procs = {pid: server}
            for child in server.children(recursive=True):
                self._procs[child.pid] = child
        except psutil.NoSuchProcess:
            raise Unavailable(f"the process on port {self.port} (pid {pid}) exited") from None
        self.pid = pid

    def _refresh(self) -> None:
        """Pick up new runner children (and the server again if it restarted)."""
        psutil = self._psutil
        server = self._procs.get(self.pid) if self.pid is not None else None
        try:
            if server is None or not server.is_running():
                pid, _ = find_listener(self.port, psutil)
                if pid is not None:
                    self._attach(pid)
                return
            for child in server.children(recursive=True):
                self._procs.setdefault(child.pid, child)
        except (psutil.NoSuchProcess, psutil.AccessDenied, Unavailable):
            pass

    def _new_children(self) -> None:
        """Linux: pick up a runner the moment it starts, cheaply (the server's ``/proc/PID/task/*/children``).

        A cold load starts the runner *during* a request; found only at the next full search (``REFIND_EVERY``
        reads, 5 s at 200 ms) its CPU time would land on a later request. Reading the server's own children
        lists costs well under a millisecond; a full search scans every process.
        """
        if self.pid is None:
            return
        try:
            for listing in (PROC / str(self.pid) / "task").glob("*/children"):
                for word in listing.read_text().split():
                    pid = int(word)
                    if pid not in self._procs:
                        self._procs[pid] = self._psutil.Process(pid)
        except (OSError, ValueError, self._psutil.NoSuchProcess, self._psutil.AccessDenied):
            pass

    def read(self) -> dict[str, float]:
        psutil = self._psutil
        self._reads += 1
        if self._reads % REFIND_EVERY == 0:
            self._refresh()
        elif PROC.is_dir():
            self._new_children()  # every read, cheaply: a runner may live for less than a few samples
        else:
            self._refresh()  # no /proc (macOS): the full search, every read, for the same reason
        rss = 0.0
        alive = 0
        cpu = 0.0
        for pid, proc in list(self._procs.items()):
            try:
                with proc.oneshot():
                    times = proc.cpu_times()
                    memory = proc.memory_info()
            except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                del self._procs[pid]  # once reaped, its CPU time is in the server's children_* figures
                continue
            cpu += times.user + times.system
            if pid == self.pid:
                cpu += getattr(times, "children_user", 0.0) + getattr(times, "children_system", 0.0)
            rss += memory.rss / MB
            alive += 1
        self._cpu_s = max(self._cpu_s, cpu)
        values: dict[str, float] = {"cpu_s": self._cpu_s}
        if alive:
            values["rss_mb"] = rss
        return values

    def details(self) -> dict[str, object]:
        names = {}
        for pid, proc in self._procs.items():
            try:
                names[pid] = " ".join(proc.cmdline()[:3]) or proc.name()
            except Exception:
                names[pid] = "?"
        return {"port": self.port, "server_pid": self.pid, "found_by": self.found_by, "processes": names}

    def close(self) -> None:
        self._procs = {}


class HostSampler:
    """The host's memory in use (psutil) and, on Linux, memory pressure (PSI)."""

    name = "host"

    def __init__(self) -> None:
        self._psutil: Any = None

    def open(self) -> None:
        self._psutil = _psutil()

    def read(self) -> dict[str, float]:
        values = {"host_mem_used_pct": float(self._psutil.virtual_memory().percent)}
        pressure = memory_pressure()
        if pressure is not None:
            values["host_mem_pressure"] = pressure
        return values

    def details(self) -> dict[str, object]:
        memory = self._psutil.virtual_memory()
        return {"total_mb": round(memory.total / MB), "psi": PSI_MEMORY.exists()}

    def close(self) -> None:
        pass


def memory_pressure(path: Path = PSI_MEMORY) -> float | None:
    """Linux PSI ``some avg10`` for memory (percent of the last 10 s some task waited on memory), else None."""
    try:
        text = path.read_text(encoding="ascii")
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith("some "):
            for field in line.split()[1:]:
                key, _, value = field.partition("=")
                if key == "avg10":
                    try:
                        return float(value)
                    except ValueError:
                        return None
    return None
