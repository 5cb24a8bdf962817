"""The one way tests run the emulator and a real mitmdump with the addon.

- :func:`emulator` starts the built-in emulator (``FAST`` pacing unless told otherwise) as a context manager.
- :class:`Mitmdump` is the product's :class:`~analyzer.recorder.process.MitmdumpProcess` plus what tests need:
  its own log directory, record polling, and regular (forward) proxy mode as well as reverse mode.
"""

from __future__ import annotations

import socket
import time
from pathlib import Path
from typing import Any

from analyzer.emulator import EmulatorConfig, EmulatorThread
from analyzer.protocol.record import InteractionRecord
from analyzer.recorder import process
from analyzer.recorder.process import MitmdumpProcess, find_mitmdump
from analyzer.store.log import read_log
from tests.support.defaults import FAST

RECORD_TIMEOUT_S = 15.0


def free_port(host: str = "127.0.0.1", preferred: int = 0) -> int:
    """``preferred`` if it is free on ``host`` (e.g. Ollama's port, so no ``--port`` is needed), else any free port."""
    if preferred:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            try:
                sock.bind((host, preferred))
            except OSError:
                pass
            else:
                return preferred
    return process.free_port(host)


def emulator(host: str = "127.0.0.1", port: int = 0, **options: Any) -> EmulatorThread:
    """An emulator (not yet started: use ``with``) with ``FAST`` pacing overridden by ``EmulatorConfig`` fields."""
    return EmulatorThread(EmulatorConfig(**{**FAST, **options}), host=host, port=port)


class Mitmdump(MitmdumpProcess):
    """mitmdump with the addon, logging to ``log_dir``; ``upstream=None`` runs it as a regular (forward) proxy."""

    def __init__(
        self,
        upstream: str | None,
        host: str,
        log_dir: Path,
        console_path: Path,
        *options: str,
        addon: Path | None = None,
    ) -> None:
        settings = dict(option.split("=", 1) for option in options)
        extra: dict[str, Any] = {} if addon is None else {"addon": addon}
        super().__init__(
            upstream or "",
            host=host,
            options={"ollama_log_dir": str(log_dir), **settings},
            console_path=console_path,
            **extra,
        )
        self.regular = upstream is None
        self.log_dir = log_dir

    def command(self) -> list[str]:
        if not self.regular:
            return super().command()
        # Regular mode: the listen address is given apart; port 0 and the "listening at" line work the same way.
        argv = [find_mitmdump(), "--listen-host", self.host, "--listen-port", "0", "--set", "termlog_verbosity=info"]
        if self.addon is not None:
            argv += ["-s", str(self.addon)]
        for name, value in self.options.items():
            argv += ["--set", f"{name}={value}"]
        return argv

    @property
    def address(self) -> tuple[str, int]:
        return self.host, self.port

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
