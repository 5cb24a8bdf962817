"""Record a capture on this machine with tcpdump while a block of code runs (tests, benchmarks, demos).

Measured here: tcpdump stopped with SIGINT *without* ``--immediate-mode`` saved 0 of 24 packets of a short
loopback exchange, so every capture taken here uses it; ``-U`` makes the file grow packet by packet so the
end of the traffic can be observed, and a larger kernel buffer (``-B``) keeps ``-i any`` from dropping
packets under load. The privileged, validated capture for users is ``capture_scripts/helper.py``.

Test and benchmark tooling only (no command uses it). Tests that capture live traffic carry the ``live`` marker
and call :func:`require_live_capture` (a skip naming what is missing); the committed corpus needs none of this.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

START_TIMEOUT_S = 15.0
STOP_TIMEOUT_S = 15.0
SETTLE_TIMEOUT_S = 5.0
# tcpdump's default 2 MiB buffer dropped up to 16 of ~800 packets on "any" here ("packets dropped by kernel").
BUFFER_KIB = "65536"
_DROPPED = re.compile(rb"(\d+) packets? dropped by kernel")


def missing_live_capture(tools: Sequence[str] = ("tcpdump",)) -> str | None:
    """Why live captures cannot be made here (not root, a tool missing), or None."""
    if os.geteuid() != 0:
        return "capturing on loopback needs root"
    for tool in tools:
        if shutil.which(tool) is None:
            return f"{tool} not installed"
    return None


def require_live_capture(tools: Sequence[str] = ("tcpdump",)) -> None:
    """Skip the calling test (with the reason) unless live captures can be made here."""
    reason = missing_live_capture(tools)
    if reason:
        import pytest

        pytest.skip(reason)


class CaptureFailed(RuntimeError):
    """tcpdump did not start; the message carries its stderr."""


@dataclass
class TcpdumpRun:
    """One tcpdump run: the file, and once stopped, its stderr and kernel drop count."""

    path: Path
    stderr: str = ""
    dropped: int | None = None


@contextlib.contextmanager
def tcpdump(
    out: Path, capture_filter: str, iface: str = "lo", extra: Sequence[str] = (), tcpdump_path: str = "tcpdump"
) -> Iterator[TcpdumpRun]:
    """Capture ``capture_filter`` on ``iface`` into ``out`` (classic pcap) while the block runs.

    Waits (bounded) for tcpdump's "listening on" line before yielding; after the block, waits until the
    file stops growing (bounded), then stops tcpdump with SIGINT and waits (bounded, SIGKILL as fallback).
    ``-Z root`` keeps Debian's tcpdump from dropping to a user that cannot write ``out`` (needs root).
    """
    argv = [tcpdump_path, "-i", iface, "--immediate-mode", "-U", "-n", "-B", BUFFER_KIB, "-Z", "root", *extra]
    argv += ["-w", str(out), capture_filter]
    run = TcpdumpRun(Path(out))
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    assert proc.stderr is not None
    os.set_blocking(proc.stderr.fileno(), False)
    seen = b""
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while b"listening on" not in seen:
            if proc.poll() is not None or time.monotonic() > deadline:
                seen += proc.stderr.read() or b""
                raise CaptureFailed(f"tcpdump did not start: {seen.decode(errors='replace').strip()}")
            chunk = proc.stderr.read() or b""
            seen += chunk
            if not chunk:
                time.sleep(0.02)
        yield run
        wait_until_stable(run.path)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
        try:
            proc.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(STOP_TIMEOUT_S)
        seen += proc.stderr.read() or b""
        proc.stderr.close()
        run.stderr = seen.decode(errors="replace")
        match = _DROPPED.search(seen)
        run.dropped = int(match.group(1)) if match else None


def wait_until_stable(path: Path, quiet_s: float = 0.25, timeout_s: float = SETTLE_TIMEOUT_S) -> None:
    """Poll until ``path`` has not grown for ``quiet_s`` (bounded by ``timeout_s``)."""
    deadline = time.monotonic() + timeout_s
    size, since = -1, time.monotonic()
    while time.monotonic() < deadline:
        now_size = path.stat().st_size if path.exists() else 0
        if now_size != size:
            size, since = now_size, time.monotonic()
        elif time.monotonic() - since >= quiet_s:
            return
        time.sleep(0.05)
