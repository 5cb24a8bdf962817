"""``ollama-wire top`` as a person uses it: in a real terminal (tmux) beside a real mitmdump with the addon, while
the official ollama client streams through it to the emulator. ``tmux capture-pane`` is what the person sees.

Also the live feed end to end: a subscriber on the addon's socket sees start, progress and an end whose record
is the one in the log. Every wait is a bounded poll; no assertion is about speed.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import ollama
import pytest

from analyzer.live.subscriber import read_events
from analyzer.recorder.process import MitmdumpProcess, ProxyError

if TYPE_CHECKING:
    from tests.conftest import EmulatorFactory
    from tests.e2e.conftest import MitmdumpFactory

pytestmark = pytest.mark.timeout(90)
TOP = str(Path(sys.executable).parent / "ollama-wire")
SCREEN = (150, 45)


@pytest.fixture
def sock() -> Iterator[Path]:
    directory = Path(tempfile.mkdtemp(prefix="top-"))
    yield directory / "live.sock"
    shutil.rmtree(directory, ignore_errors=True)


class Tmux:
    """One detached tmux session running a command; ``screen()`` is ``capture-pane`` of it."""

    def __init__(self, command: list[str]) -> None:
        self.name = "owtop-" + uuid.uuid4().hex[:8]
        width, height = SCREEN
        shell = " ".join(subprocess.list2cmdline([part]) for part in command)
        subprocess.run(
            ["tmux", "new-session", "-d", "-s", self.name, "-x", str(width), "-y", str(height), shell + "; sleep 30"],
            check=True,
            env={"TERM": "xterm-256color", "PATH": "/usr/bin:/bin", "HOME": str(Path.home())},
        )

    def screen(self) -> str:
        done = subprocess.run(["tmux", "capture-pane", "-p", "-t", self.name], capture_output=True, text=True)
        return done.stdout

    def wait_for(self, found: Callable[[str], bool], timeout_s: float = 20.0, what: str = "") -> str:
        deadline = time.monotonic() + timeout_s
        screen = ""
        while time.monotonic() < deadline:
            screen = self.screen()
            if found(screen):
                return screen
            time.sleep(0.1)
        raise AssertionError(f"not on screen after {timeout_s}s: {what}\n{screen}")

    def keys(self, *keys: str) -> None:
        subprocess.run(["tmux", "send-keys", "-t", self.name, *keys], check=True)

    def close(self) -> None:
        subprocess.run(["tmux", "kill-session", "-t", self.name], capture_output=True)


def wait_for_socket(path: Path, timeout_s: float = 15.0) -> None:
    """The addon binds its socket just after mitmdump listens (in ``running``): wait for it, bounded."""
    deadline = time.monotonic() + timeout_s
    while not path.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert path.exists(), f"no live feed socket at {path}"


def row_of(screen: str, word: str) -> list[str] | None:
    """The cells of the first table row mentioning ``word`` (cells are separated by 2+ spaces)."""
    for line in screen.splitlines():
        if word in line:
            inner = line.strip().strip("│").strip()
            return re.split(r"\s{2,}", inner)
    return None


@pytest.mark.skipif(shutil.which("tmux") is None, reason="needs tmux")
def test_top_in_a_terminal_shows_streams_growing_finishing_and_a_pull(
    emulator_factory: EmulatorFactory, mitmdump_factory: MitmdumpFactory, sock: Path
) -> None:
    marker = "t" + uuid.uuid4().hex[:8]
    model, pulled = f"{marker}:1b", f"{marker}-new:7b"
    # Slow pacing so a person (and capture-pane) can watch the stream: 120 tokens, 50 ms apart; pulls step 300 ms.
    emulator = emulator_factory(models=(model,), token_ms=50.0, tokens=120, pull_step_ms=300.0)
    proxy = mitmdump_factory(emulator, options=[f"ollama_live={sock}"])
    top = Tmux([TOP, "top", "--live", str(sock), "--log-dir", str(proxy.log_dir), "--ollama", emulator.url])
    client = ollama.Client(host=proxy.url, timeout=60)
    try:
        top.wait_for(lambda s: "live feed" in s, what="the header saying the live feed is attached")
        streaming = threading.Thread(
            target=lambda: list(client.generate(model=model, prompt=f"Tell me a long story {marker}", stream=True))
        )
        streaming.start()
        counts: list[int] = []
        deadline = time.monotonic() + 30
        while streaming.is_alive() and time.monotonic() < deadline and len(set(counts)) < 3:
            cells = row_of(top.screen(), "Tell me a long story")
            if cells is not None and len(cells) >= 5 and cells[4].isdigit():
                counts.append(int(cells[4]))
            time.sleep(0.2)
        assert len(set(counts)) >= 3, counts  # the token count grew while the stream ran
        assert counts == sorted(counts)
        in_flight = top.screen()
        cells = row_of(in_flight, "Tell me a long story")
        assert cells is not None and cells[0] == model and cells[3].endswith("ms")  # model, TTFT known
        streaming.join(60)
        finished = top.wait_for(
            lambda s: row_of(s, "Tell me a long story") is None and (row_of(s, model) or [""])[1:2] == ["200"],
            what="the finished row in Recent",
        )
        recent = row_of(finished, model)
        assert recent is not None and recent[2] == model and recent[3] == "/api/generate"
        # A pull shows a progress bar while it runs.
        pulling = threading.Thread(target=lambda: list(client.pull(pulled, stream=True)))
        pulling.start()
        bar = re.compile(rf"⇣ {re.escape(pulled)} .* █+░* +\d+% [\d.]+MB/[\d.]+MB [\d.]+[KM]?B/s ETA ")
        screen = top.wait_for(lambda s: bar.search(s) is not None, what="the pull's progress bar")
        pulling.join(30)
        assert "25%" in screen or "50%" in screen or "75%" in screen or "100%" in screen
        top.keys("q")
    finally:
        top.close()


def test_live_feed_through_mitmdump_matches_the_log(
    emulator_factory: EmulatorFactory, mitmdump_factory: MitmdumpFactory, sock: Path
) -> None:
    import asyncio

    emulator = emulator_factory(token_ms=20.0, tokens=30)
    proxy = mitmdump_factory(emulator, options=[f"ollama_live={sock}"])
    marker = "f" + uuid.uuid4().hex[:8]
    seen: list[dict] = []
    wait_for_socket(sock)

    async def listen() -> None:
        async for event in read_events(sock):
            seen.append(event)
            if event["event"] == "end" and marker in json.dumps(event):
                return

    def client() -> None:
        time.sleep(0.3)
        list(ollama.Client(host=proxy.url, timeout=30).generate(model="llama3.2:1b", prompt=marker, stream=True))

    thread = threading.Thread(target=client)
    thread.start()
    asyncio.run(asyncio.wait_for(listen(), 30))
    thread.join(30)
    (record,) = proxy.wait_for(marker)
    kinds = [e["event"] for e in seen]
    assert kinds[0] == "hello" and "start" in kinds and "progress" in kinds and kinds[-1] == "end"
    start = next(e for e in seen if e["event"] == "start")
    assert start["id"] == record.id and start["prompt"] == marker and start["model"] == "llama3.2:1b"
    tokens = [e["tokens"] for e in seen if e["event"] == "progress"]
    assert tokens == sorted(tokens) and tokens[-1] > 0
    assert seen[-1]["record"] == record.to_dict()


def test_once_prints_a_snapshot_with_the_running_stream(
    emulator_factory: EmulatorFactory, mitmdump_factory: MitmdumpFactory, sock: Path
) -> None:
    emulator = emulator_factory(token_ms=50.0, tokens=100)
    proxy = mitmdump_factory(emulator, options=[f"ollama_live={sock}"])
    marker = "o" + uuid.uuid4().hex[:8]
    client = ollama.Client(host=proxy.url, timeout=30)
    wait_for_socket(sock)
    list(client.generate(model="qwen3:0.6b", prompt="warm up", stream=True))
    thread = threading.Thread(target=lambda: list(client.generate(model="llama3.2:1b", prompt=marker, stream=True)))
    thread.start()
    argv = [TOP, "top", "--once", "--live", str(sock), "--log-dir", str(proxy.log_dir), "--ollama", emulator.url]
    argv += ["--width", "150"]
    try:
        deadline = time.monotonic() + 20
        out = ""
        while time.monotonic() < deadline and marker not in out:
            out = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=True).stdout
    finally:
        thread.join(30)
    assert "live feed" in out and "1 running" in out and marker in out
    assert re.search(r"200\s+qwen3:0\.6b\s+/api/generate", out)
    assert "Ollama" in out and f"{emulator.url} up" in out and "Machine" in out
    offline = subprocess.run([*argv[:4], str(sock) + ".none", *argv[5:]], capture_output=True, text=True, timeout=30)
    assert offline.returncode == 0 and "log only" in offline.stdout and "qwen3:0.6b" in offline.stdout


def test_a_bad_ollama_live_stops_mitmdump_with_one_line(emulator_factory: EmulatorFactory, tmp_path: Path) -> None:
    emulator = emulator_factory()
    proxy = MitmdumpProcess(emulator.url, options={"ollama_live": "/etc/hostname", "ollama_log_dir": str(tmp_path)})
    with contextlib.suppress(ProxyError):
        proxy.start()  # it may listen for a moment before its startup check exits
    assert proxy.process is not None
    assert proxy.process.wait(15) == 1
    proxy.stop()
    assert "ollama_live=/etc/hostname: /etc/hostname exists and is not a socket" in proxy.console()
    assert "Traceback" not in proxy.console()


def test_ollama_live_off_publishes_nothing(
    emulator_factory: EmulatorFactory, mitmdump_factory: MitmdumpFactory, sock: Path, tmp_path: Path
) -> None:
    emulator = emulator_factory()
    proxy = mitmdump_factory(emulator, options=["ollama_live=off"])
    list(ollama.Client(host=proxy.url, timeout=30).generate(model="llama3.2:1b", prompt="quiet", stream=True))
    proxy.wait_for("quiet")
    assert "live feed at" not in proxy.console()


def test_a_request_waiting_for_its_first_token_is_already_in_flight(
    emulator_factory: EmulatorFactory, mitmdump_factory: MitmdumpFactory, sock: Path
) -> None:
    """Ollama sends its response headers with the first token: during a model load or a long prompt the request
    has no response yet. The feed shows it waiting (a start, no status, no TTFT) well before its first token
    arrives: the start comes while the request waits, progress with a status only once the answer began."""
    import asyncio

    emulator = emulator_factory(prefill_ms=1500.0, token_ms=20.0, tokens=40)
    proxy = mitmdump_factory(emulator, options=[f"ollama_live={sock}"])
    wait_for_socket(sock)
    marker = "w" + uuid.uuid4().hex[:8]
    seen: list[dict] = []
    arrived: list[float] = []

    async def listen() -> None:
        async for event in read_events(sock):
            seen.append(event)
            arrived.append(time.monotonic())
            if event["event"] == "hello":  # attached: now the request may go
                # the companion tells the proxy someone watches over its pipe: give that a moment, or the proxy
                # notes the waiting request only when its answer begins (requests already waiting at attach time
                # show up with their first token)
                threading.Timer(0.5, client).start()
            if event["event"] == "end" and marker in json.dumps(event):
                return

    def client() -> None:
        list(ollama.Client(host=proxy.url, timeout=30).generate(model="llama3.2:1b", prompt=marker, stream=True))

    asyncio.run(asyncio.wait_for(listen(), 30))
    (record,) = proxy.wait_for(marker)
    mine = [(e, at) for e, at in zip(seen, arrived, strict=True) if e.get("id") == record.id]
    (start, start_at), *later = mine
    assert start["event"] == "start" and start["prompt"] == marker
    answered_at = next(at for e, at in later if e["event"] == "progress" and e["status"] == 200)
    assert answered_at - start_at > 0.5  # shown while it waited 1.5 s for its first token, not when it came
    first = next(e for e, _ in later if e["event"] == "progress")
    assert first["ttft_ms"] is None or first["status"] == 200  # no TTFT while waiting


def _priced_log(tmp_path: Path) -> Path:
    from analyzer.protocol.record import InteractionRecord
    from analyzer.store.log import InteractionLog

    log_dir = tmp_path / "log"
    started = time.strftime("%Y-%m-%dT%H:%M:%S.000000Z", time.gmtime(time.time() - 5))
    InteractionLog(log_dir).append(
        InteractionRecord(
            id="priced",
            source="proxy",
            started_at=started,
            method="POST",
            path="/api/generate",
            status=200,
            kind="generate",
            model="llama3.2:1b",
            prompt_eval_count=1000,
            eval_count=500,
            energy_j=720.0,
            complete=True,
        )
    )
    return log_dir


def test_once_with_prices_shows_cost(tmp_path: Path) -> None:
    """--prices (or `prices:` in the config file) adds the cost columns and totals to the snapshot."""
    prices = tmp_path / "prices.yaml"
    prices.write_text("kwh: 0.30\nmodels:\n  llama3.2: {input: 0.05, output: 0.08}\n")
    argv = [TOP, "top", "--once", "--live", "off", "--log-dir", str(_priced_log(tmp_path))]
    argv += ["--ollama", "http://127.0.0.1:9", "--width", "200"]
    env = {**os.environ, "OLLAMA_WIRE_CONFIG": str(tmp_path / "none.yaml")}
    plain = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=True, env=env).stdout
    assert "llama3.2:1b" in plain and "$" not in plain and "Energy $" not in plain
    out = subprocess.run([*argv, "--prices", str(prices)], capture_output=True, text=True, timeout=30, env=env)
    assert out.returncode == 0, out.stderr
    assert "Energy $" in out.stdout and "API $" in out.stdout
    assert re.search(r"llama3\.2:1b .*\$0\.000060\s+\$0\.000090", out.stdout), out.stdout
    assert "cost last 5 min: $0.000060 energy, $0.000090 API" in " ".join(out.stdout.split())
    assert "GPU: unavailable because" in out.stdout
    config = tmp_path / "config.yaml"
    config.write_text("prices: prices.yaml\n")
    env["OLLAMA_WIRE_CONFIG"] = str(config)
    from_config = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=True, env=env).stdout
    assert "$0.000090" in from_config


def test_a_bad_prices_file_is_one_line_before_the_app_starts(tmp_path: Path) -> None:
    bad = tmp_path / "prices.yaml"
    bad.write_text("kwh: -1\n")
    for path in (bad, tmp_path / "missing.yaml"):
        # Without --once the dashboard would take over the terminal: the error must come first.
        out = subprocess.run(
            [TOP, "top", "--live", "off", "--prices", str(path)], capture_output=True, text=True, timeout=30
        )
        assert out.returncode != 0 and out.stdout == ""
        lines = out.stderr.strip().splitlines()
        assert len(lines) == 1 and str(path) in lines[0] and "Traceback" not in out.stderr, out.stderr
