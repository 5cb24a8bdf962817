"""Run ``mitmdump`` with the ollama_log addon as a child process (the demo, tests and benchmarks use it)."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import IO

from analyzer.protocol.record import format_address

ADDON_PATH = Path(__file__).resolve().parent / "mitmproxy_script.py"  # loadable from an installed package


class ProxyError(Exception):
    """mitmdump could not be found or did not start; the message says why."""


def find_mitmdump() -> str:
    """The ``mitmdump`` beside this Python (the project's venv), else the one on PATH."""
    beside = Path(sys.executable).parent / "mitmdump"
    if beside.exists():
        return str(beside)
    found = shutil.which("mitmdump")
    if not found:
        raise ProxyError("mitmdump not found: install mitmproxy in this environment (pip install mitmproxy)")
    return found


def free_port(host: str = "127.0.0.1") -> int:
    """A port that was free a moment ago on ``host``."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def wait_for_port(host: str, port: int, timeout_s: float, process: subprocess.Popen | None = None) -> bool:
    """Poll until something accepts connections on host:port (bounded by ``timeout_s``)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            return False
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.05)
    return False


LISTENING = re.compile(r"listening at \[?([0-9A-Za-z.:-]+?)\]?:(\d+)\.")
# The recorder's line once its feeds' companion runs (or that none is needed): companion_link.py's wording.
RECORDER_SCRIPTS = ("mitmproxy_script.py", "ollama_log.py")  # scripts that load the recorder
FEEDS_READY = re.compile(r"ollama_feeds: running in their companion process \(pid (\d+)\)")
FEEDS_SETTLED = re.compile(r"ollama_feeds: |feeds' companion|Traceback")


def _cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of process ``pid`` so far (Linux /proc), or None where unavailable."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class MitmdumpProcess:
    """``mitmdump --mode reverse:UPSTREAM@HOST:0 -s <addon> --set …`` as a context manager.

    mitmdump binds port 0 and the real port is read from its "listening at" line, so parallel runs
    never race for a port. ``addon`` defaults to the installed package's script (``ADDON_PATH``, what
    ``ollama-wire addon-path`` prints); pass another script, or ``None`` for a bare proxy. Console output goes
    to ``console_path`` (a temp file unless given).
    """

    def __init__(
        self,
        upstream: str,
        *,
        host: str = "127.0.0.1",
        addon: Path | None = ADDON_PATH,
        options: dict[str, str] | None = None,
        console_path: Path | None = None,
        start_timeout_s: float = 30.0,
    ) -> None:
        self.upstream = upstream
        self.host = host
        self.port = 0
        self.addon = addon
        self.options = options or {}
        self.console_path = console_path or Path(tempfile.mkstemp(prefix="mitmdump-", suffix=".log")[1])
        self.start_timeout_s = start_timeout_s
        self.process: subprocess.Popen | None = None
        self._console: IO[bytes] | None = None

    @property
    def url(self) -> str:
        return "http://" + format_address(self.host, self.port)

    def command(self) -> list[str]:
        # "@::1:0" is how mitmproxy spells an IPv6 listen address in a mode spec ("@[::1]:0" fails).
        argv = [find_mitmdump(), "--mode", f"reverse:{self.upstream}@{self.host}:0", "--set", "termlog_verbosity=info"]
        if self.addon is not None:
            argv += ["-s", str(self.addon)]
        for name, value in self.options.items():
            argv += ["--set", f"{name}={value}"]
        return argv

    def start(self) -> MitmdumpProcess:
        """Start and wait (bounded) until the proxy accepts connections."""
        if self.addon is not None and not self.addon.exists():
            raise ProxyError(f"{self.addon}: addon script not found")
        self._console = self.console_path.open("wb")
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.process = subprocess.Popen(
            self.command(), stdout=self._console, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env
        )
        deadline = time.monotonic() + self.start_timeout_s
        while time.monotonic() < deadline and self.process.poll() is None:
            match = LISTENING.search(self.console())
            if match and wait_for_port(self.host, int(match.group(2)), 1.0, self.process):
                self.port = int(match.group(2))
                if self.addon is not None and self.addon.name in RECORDER_SCRIPTS:
                    self._wait_for_feeds(deadline)
                return self
            time.sleep(0.05)
        output = self.console()
        self.stop()
        raise ProxyError(f"mitmdump did not start listening: {output[-1000:]}")

    def _wait_for_feeds(self, deadline: float) -> bool:
        """Wait (bounded) until the recorder says its feeds' companion runs (or that none is needed)."""
        while time.monotonic() < deadline and self.process is not None and self.process.poll() is None:
            if FEEDS_SETTLED.search(self.console()):
                return True
            time.sleep(0.05)
        return False

    @property
    def companion_pid(self) -> int | None:
        """The pid of the feeds' companion process running now (the last one announced), or None."""
        found = FEEDS_READY.findall(self.console())
        return int(found[-1]) if found else None

    def companion_cpu_seconds(self) -> float | None:
        """User + system CPU of the companion announced last (Linux /proc), or None."""
        pid = self.companion_pid
        return None if pid is None else _cpu_seconds(pid)

    def console(self) -> str:
        """Everything mitmdump printed so far."""
        try:
            return self.console_path.read_text(errors="replace")
        except OSError:
            return ""

    def cpu_seconds(self) -> float | None:
        """User + system CPU time the process used so far (Linux /proc), or None where unavailable."""
        if self.process is None:
            return None
        return _cpu_seconds(self.process.pid)

    def stop(self, sig: int = signal.SIGINT, timeout_s: float = 15.0) -> int | None:
        """SIGINT (mitmdump's clean shutdown: the addon flushes open interactions), then kill if it hangs."""
        process = self.process
        if process is None:
            return None
        if process.poll() is None:
            process.send_signal(sig)
            try:
                process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout_s)
        if self._console is not None:
            self._console.close()
            self._console = None
        return process.returncode

    def __enter__(self) -> MitmdumpProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
