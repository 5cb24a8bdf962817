"""``ollama-wire proxy``: mitmdump in reverse mode with the installed addon, in the foreground until Ctrl-C.

The 95% case in one command: clients talk to ``--listen`` (default ``127.0.0.1:11435``), mitmdump forwards to
``--upstream`` (default ``http://127.0.0.1:11434``) and the addon records each interaction. Everything after
the known options goes to mitmdump unchanged, after ours, so ``--set ollama_log_dir=…`` or
``--set flow_detail=1`` override the defaults here.
"""

from __future__ import annotations

import errno
import ipaddress
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import FrameType
from urllib.parse import urlsplit

from analyzer.protocol.endpoints import DEFAULT_OLLAMA_URL, ollama_url
from analyzer.recorder.process import ADDON_PATH, ProxyError, find_mitmdump

DEFAULT_LISTEN = "127.0.0.1:11435"
DEFAULT_UPSTREAM = DEFAULT_OLLAMA_URL
# After Ctrl-C mitmdump finishes open interactions and exits; one that hangs longer than this is killed.
STOP_TIMEOUT_S = 15.0
# mitmdump's own one line per flow duplicates the addon's one line per interaction: off unless asked for.
QUIET_DEFAULTS = ("--set", "flow_detail=0")


@dataclass(frozen=True)
class ProxyPlan:
    """Where the proxy listens, where it forwards to, and the mitmdump options passed through."""

    host: str
    port: int
    upstream: str
    extra_args: tuple[str, ...] = ()

    @property
    def listen(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    def argv(self, mitmdump: str) -> list[str]:
        """The mitmdump command line (IPv6 listen hosts are spelt ``@::1:port`` in a mode spec)."""
        mode = f"reverse:{self.upstream}@{self.host}:{self.port}"
        return [mitmdump, "--mode", mode, "-s", str(ADDON_PATH), *QUIET_DEFAULTS, *self.extra_args]


def parse_listen(value: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:11435`` for IPv6) → (host, port); ValueError with a one-line reason."""
    host, sep, port_text = value.rpartition(":")
    if not sep or not host or not port_text.isdigit():
        raise ValueError(f"{value!r} is not HOST:PORT (e.g. 127.0.0.1:11435 or [::1]:11435)")
    port = int(port_text)
    if port > 65535:
        raise ValueError(f"{value!r}: port {port} is out of range")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise ValueError(f"{value!r}: put an IPv6 address in brackets, e.g. [::1]:11435")
    return host, port


def is_loopback(host: str) -> bool:
    """Whether ``host`` is a loopback address or ``localhost`` (names other than that count as reachable)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def parse_upstream(value: str) -> str:
    """The upstream URL; without a scheme it reads like ``OLLAMA_HOST`` (``host`` → ``http://host:11434``)."""
    shown = value if "://" in value else "http://" + value
    value = ollama_url(value) if value.strip() else shown
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{shown!r} is not an http:// or https:// URL")
    try:
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        raise ValueError(f"{shown!r} has an invalid port") from None
    return value.rstrip("/")


def check_port_free(host: str, port: int) -> None:
    """Raise :class:`ProxyError` when something already listens on host:port (port 0 is always free)."""
    if port == 0:
        return
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        # like mitmproxy's own listener: connections left in TIME_WAIT by an earlier proxy do not count
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise ProxyError(
                    f"cannot listen on {host}:{port}: the port is in use (another proxy? choose one with --listen)"
                ) from None
            raise ProxyError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None


def run_in_foreground(argv: Sequence[str], *, stop_timeout_s: float = STOP_TIMEOUT_S) -> int:
    """Run ``argv`` until it exits; Ctrl-C, SIGTERM or a closed terminal stop it cleanly. Its exit status.

    Each of SIGINT, SIGTERM and SIGHUP is passed on as SIGINT, mitmdump's clean shutdown (the addon writes the
    open interactions); a SIGTERM was seen to kill a mitmdump 11 outright (status 143) here. The child gets its
    own session, so a Ctrl-C at the terminal reaches only this process and mitmdump sees the signal once. The
    handlers are in place before the child starts: a signal during its start is passed on as soon as it exists
    (never lost, never leaving an orphan), and the child does not inherit an ignored SIGINT (``nohup``, ``&``).
    A child still running ``stop_timeout_s`` after the first signal is killed.
    """
    stop_requested_at: list[float] = []
    child: subprocess.Popen[bytes] | None = None

    def forward(_signum: int, _frame: FrameType | None) -> None:
        if not stop_requested_at:
            stop_requested_at.append(time.monotonic())
        if child is not None and child.poll() is None:
            child.send_signal(signal.SIGINT)

    stop_signals = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    previous = {signum: signal.signal(signum, forward) for signum in stop_signals}
    try:
        child = subprocess.Popen(list(argv), stdin=subprocess.DEVNULL, start_new_session=True)
        if stop_requested_at:  # the signal came while the child was being started
            child.send_signal(signal.SIGINT)
        while True:
            try:
                return child.wait(timeout=0.2)
            except subprocess.TimeoutExpired:
                if stop_requested_at and time.monotonic() - stop_requested_at[0] > stop_timeout_s:
                    child.kill()
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        if child is not None and child.poll() is None:  # only on an unexpected error above: no orphan mitmdump
            child.kill()
            child.wait()


def check_not_itself(plan: ProxyPlan) -> None:
    """Raise :class:`ProxyError` when the upstream is the proxy's own listen address (every request would loop)."""
    upstream = urlsplit(plan.upstream)
    port = upstream.port or (443 if upstream.scheme == "https" else 80)
    host = upstream.hostname or ""
    wildcard = plan.host in ("0.0.0.0", "::", "")
    same_host = host == plan.host or (is_loopback(host) and (is_loopback(plan.host) or wildcard))
    if port == plan.port and same_host:
        raise ProxyError(f"--upstream {plan.upstream} is the proxy's own --listen {plan.listen}: requests would loop")


def run_proxy(plan: ProxyPlan, on_ready: Callable[[str], None] | None = None) -> int:
    """Check the plan, mitmdump and the listen port, call ``on_ready(mitmdump path)``, run the proxy until it
    stops; mitmdump's exit status."""
    check_not_itself(plan)
    mitmdump = find_mitmdump()
    check_port_free(plan.host, plan.port)
    if on_ready is not None:
        on_ready(mitmdump)
    return run_in_foreground(plan.argv(mitmdump))
