"""Where the live feed's socket lives when nobody says: found by publisher and subscriber alike, no configuration."""

from __future__ import annotations

import os
from pathlib import Path

SOCKET_NAME = "live.sock"
OFF = "off"
# sockaddr_un.sun_path holds 108 bytes on Linux, 104 on macOS; stay below both.
MAX_SOCKET_PATH = 100


def default_socket_path() -> Path:
    """``$XDG_RUNTIME_DIR/ollama-wire/live.sock`` (per-user, tmpfs), else ``~/.cache/ollama-wire/live.sock``.

    Either way only the user can reach it (directory 0700, socket 0600). A path too long for a Unix socket
    falls back to ``/tmp/ollama-wire-<uid>/live.sock``.
    """
    runtime = os.environ.get("XDG_RUNTIME_DIR", "")
    if runtime and Path(runtime).is_dir() and os.access(runtime, os.W_OK):
        base = Path(runtime)
    else:
        cache = os.environ.get("XDG_CACHE_HOME", "")
        base = Path(cache) if cache else Path.home() / ".cache"
    path = base / "ollama-wire" / SOCKET_NAME
    if len(os.fsencode(path)) > MAX_SOCKET_PATH:
        path = Path("/tmp") / f"ollama-wire-{os.getuid()}" / SOCKET_NAME
    return path


def socket_path(setting: str) -> Path | None:
    """The socket for a ``ollama_live`` / ``--live`` value: ``""`` = default, ``off`` = none, else that path."""
    value = setting.strip()
    if value.lower() == OFF:
        return None
    if not value:
        return default_socket_path()
    return Path(value).expanduser()


def path_problem(setting: str) -> str | None:
    """What is wrong with an ``ollama_live`` value, or None."""
    path = socket_path(setting)
    if path is None:
        return None
    if len(os.fsencode(path)) > MAX_SOCKET_PATH:
        return f"socket path longer than {MAX_SOCKET_PATH} bytes"
    if path.exists() and not path.is_socket():
        return f"{path} exists and is not a socket"
    if path.parent.exists() and not path.parent.is_dir():
        return f"{path.parent} is not a directory"
    return None
