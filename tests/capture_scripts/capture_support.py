"""Helpers shared by the capture tests: run code as another user, generate real client traffic."""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ollama
import pytest

IS_ROOT = os.geteuid() == 0
needs_root = pytest.mark.skipif(not IS_ROOT, reason="needs root (useradd, sudo, tcpdump)")


@dataclass
class TestUser:
    """An unprivileged account created for one test module."""

    name: str
    uid: int
    gid: int
    home: Path


@dataclass
class Installation:
    """A real `ollama-capture setup` for the test user."""

    user: TestUser
    helper: Path
    spool: Path
    sudoers: Path
    config_path: Path

    @property
    def outbox(self) -> Path:
        """The user's delivery directory inside the spool."""
        return self.spool / self.user.name


def _drop_to(user: TestUser) -> None:
    os.setgroups([])
    os.setgid(user.gid)
    os.setuid(user.uid)
    os.environ.clear()
    os.environ.update(HOME=str(user.home), USER=user.name, LOGNAME=user.name, PATH="/usr/bin:/bin:/usr/sbin:/sbin")
    os.chdir(user.home)


@dataclass
class UserProcess:
    """A forked child running Python code as the test user; its result comes back as JSON."""

    pid: int
    read_fd: int

    def signal(self, signum: int) -> None:
        """Send a signal to the child (as the test would from outside)."""
        os.kill(self.pid, signum)

    def result(self, bound: float = 120.0) -> Any:
        """Wait (bounded, then kill) for the child; return its JSON result or raise with its traceback."""
        deadline = time.monotonic() + bound
        while True:
            done, status = os.waitpid(self.pid, os.WNOHANG)
            if done:
                break
            if time.monotonic() > deadline:
                os.kill(self.pid, signal.SIGKILL)
                os.waitpid(self.pid, 0)
                raise AssertionError(f"child as test user did not finish within {bound} s")
            time.sleep(0.05)
        chunks = []
        while chunk := os.read(self.read_fd, 65536):
            chunks.append(chunk)
        os.close(self.read_fd)
        payload = json.loads(b"".join(chunks) or b'{"error": "no result"}')
        if "error" in payload:
            raise AssertionError(f"child failed: {payload['error']}")
        return payload["value"]


def start_as(user: TestUser, fn: Callable[..., Any], *args: Any) -> UserProcess:
    """Fork; in the child become ``user`` (no supplementary groups, clean env) and return ``fn(*args)``."""
    read_fd, write_fd = os.pipe()
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:  # child
        code = 0
        try:
            os.close(read_fd)
            _drop_to(user)
            payload = {"value": fn(*args)}
        except BaseException:
            payload = {"error": traceback.format_exc()}
            code = 1
        try:
            os.write(write_fd, json.dumps(payload, default=str).encode())
        finally:
            os._exit(code)
    os.close(write_fd)
    return UserProcess(pid, read_fd)


def run_as(user: TestUser, fn: Callable[..., Any], *args: Any) -> Any:
    """``start_as`` and wait for the result."""
    return start_as(user, fn, *args).result()


class Traffic:
    """Real Ollama client traffic against the emulator in a background thread until stopped (bounded)."""

    def __init__(self, url: str, max_requests: int = 400) -> None:
        self.url = url
        self.max_requests = max_requests
        self.sent = 0
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._first = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        client = ollama.Client(host=self.url)
        while not self._stop.is_set() and self.sent < self.max_requests:
            try:
                if self.sent % 2:
                    client.generate(model="llama3.2:1b", prompt=f"hello {self.sent}")
                else:
                    for _chunk in client.generate(model="llama3.2:1b", prompt=f"hi {self.sent}", stream=True):
                        pass
            except Exception as exc:
                self.errors.append(repr(exc))
            self.sent += 1
            self._first.set()
            self._stop.wait(0.2)

    def __enter__(self) -> Traffic:
        self._thread.start()
        # Fork only once the client is warmed up (no import or connection set-up racing the fork).
        self._first.wait(timeout=30)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)
