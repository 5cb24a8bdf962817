"""A real ``mitmdump -s addons/ollama_log.py`` in reverse mode in front of the emulator.

- ``proxy``: one mitmdump per test module in front of the module's ``emulator``; tests tell their
  records apart by a unique marker in the prompt (``proxy.wait_for(marker)``).
- ``mitmdump_factory``: ``mitmdump_factory(emulator, host="::1")`` starts a fresh one (for tests that
  stop it, e.g. SIGINT); each is stopped when the test ends.

mitmdump binds port 0 and the fixture reads the real port from its "listening at" line, so parallel
runs never race for a port. Every wait is a bounded poll; nothing here asserts on speed.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import IO

import pytest

from analyzer.emulator import EmulatorThread
from analyzer.log import read_log
from analyzer.record import InteractionRecord

REPO = Path(__file__).resolve().parents[2]
ADDON = REPO / "addons" / "ollama_log.py"
START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 15.0
RECORD_TIMEOUT_S = 15.0
LISTENING = re.compile(r"listening at \[?([0-9a-fA-F.:]+?)\]?:(\d+)\.")


def mitmdump_path() -> str:
    """The venv's mitmdump (beside this Python)."""
    return str(Path(sys.executable).parent / "mitmdump")


def _hostport(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class Mitmdump:
    """One mitmdump child process; console output goes to a file so it can be read at any time."""

    def __init__(self, upstream: str, host: str, log_dir: Path, console_path: Path, *options: str) -> None:
        self.upstream = upstream
        self.host = host
        self.port = 0
        self.log_dir = log_dir
        self.console_path = console_path
        self.options = options
        self.process: subprocess.Popen[bytes] | None = None
        self._console: IO[bytes] | None = None

    @property
    def url(self) -> str:
        """Base URL clients use: ``http://127.0.0.1:PORT`` or ``http://[::1]:PORT``."""
        return "http://" + _hostport(self.host, self.port)

    @property
    def address(self) -> tuple[str, int]:
        return self.host, self.port

    def command(self) -> list[str]:
        # "@::1:0" is how mitmproxy 11 spells an IPv6 listen address in a mode spec ("@[::1]:0" fails).
        mode = f"reverse:{self.upstream}@{self.host}:0"
        argv = [mitmdump_path(), "--mode", mode, "-s", str(ADDON), "--set", f"ollama_log_dir={self.log_dir}"]
        for option in self.options:
            argv += ["--set", option]
        return argv

    def start(self) -> Mitmdump:
        """Start and wait (bounded) until the proxy accepts connections."""
        self._console = self.console_path.open("wb")
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.process = subprocess.Popen(
            self.command(), stdout=self._console, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env
        )
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline and self.process.poll() is None:
            match = LISTENING.search(self.console())
            if match and self._accepts(int(match.group(2))):
                self.port = int(match.group(2))
                return self
            time.sleep(0.05)
        output = self.console()
        self.stop()
        raise RuntimeError(f"mitmdump did not start listening: {output[-2000:]}")

    def _accepts(self, port: int) -> bool:
        try:
            with socket.create_connection((self.host, port), timeout=1.0):
                return True
        except OSError:
            return False

    def console(self) -> str:
        """Everything mitmdump printed so far (stdout and stderr)."""
        try:
            return self.console_path.read_text(errors="replace")
        except OSError:
            return ""

    def records(self) -> list[InteractionRecord]:
        """Every record in the log so far."""
        return read_log(self.log_dir)

    def wait_for(self, marker: str, count: int = 1, timeout_s: float = RECORD_TIMEOUT_S) -> list[InteractionRecord]:
        """Wait (bounded) until ``count`` records mention ``marker`` anywhere (prompt, model, ...); returns them.

        The addon writes a record in the ``response``/``error`` hook, which can run just after the client
        already has the last byte, so a test must poll rather than read the log once.
        """
        deadline = time.monotonic() + timeout_s
        found: list[InteractionRecord] = []
        while time.monotonic() < deadline:
            found = [r for r in self.records() if marker in r.to_json()]
            if len(found) >= count:
                return found
            time.sleep(0.05)
        raise AssertionError(f"{len(found)} of {count} records with {marker!r} after {timeout_s}s")

    def stop(self, sig: int = signal.SIGINT) -> int | None:
        """SIGINT (the addon's clean shutdown), wait bounded, then SIGKILL as the fallback."""
        process = self.process
        if process is None:
            return None
        if process.poll() is None:
            process.send_signal(sig)
            try:
                process.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(STOP_TIMEOUT_S)
        if self._console is not None:
            self._console.close()
            self._console = None
        return process.returncode


MitmdumpFactory = Callable[..., Mitmdump]


def _starter(base: Path, started: list[Mitmdump]) -> MitmdumpFactory:
    def start(upstream: EmulatorThread, host: str = "127.0.0.1", options: Sequence[str] = ()) -> Mitmdump:
        n = len(started)
        proxy = Mitmdump(upstream.url, host, base / f"log{n}", base / f"console{n}.txt", *options)
        started.append(proxy)
        return proxy.start()

    return start


@pytest.fixture
def mitmdump_factory(tmp_path: Path) -> Iterator[MitmdumpFactory]:
    """``mitmdump_factory(emulator, host="127.0.0.1", options=["name=value"])``: a fresh proxy, stopped at test end."""
    started: list[Mitmdump] = []
    yield _starter(tmp_path, started)
    for proxy in started:
        proxy.stop()


@pytest.fixture(scope="module")
def proxy(emulator: EmulatorThread, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mitmdump]:
    """One mitmdump with the addon in front of the module's emulator, shared by the module's tests."""
    started: list[Mitmdump] = []
    yield _starter(tmp_path_factory.mktemp("mitmdump"), started)(emulator)
    for running in started:
        running.stop()
