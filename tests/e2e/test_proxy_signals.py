"""``ollama-wire proxy`` as a user runs it: a real process, the official client, stopped by a signal mid-stream.

Ctrl-C (SIGINT) and a service manager's SIGTERM must both stop it cleanly: the open interaction is written,
flagged ``proxy_shutdown``, and the command exits 0 without an error and without leaving mitmdump behind.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import ollama
import pytest

from analyzer.emulator import EmulatorThread
from analyzer.protocol.record import FLAG_SHUTDOWN
from analyzer.recorder.process import LISTENING
from analyzer.store.log import read_log

pytestmark = pytest.mark.timeout(90)

OLLAMA_WIRE = Path(sys.executable).parent / "ollama-wire"
START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 20.0
# Slow enough that the stream is still open when the signal arrives; bounded by the token count.
SLOW = {"emulator_token_ms": 25, "emulator_tokens": 400}


def _mitmdump_children(pid: int) -> list[int]:
    """PIDs of the processes whose parent is ``pid`` (Linux /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc to find mitmdump")
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_a_signal_stops_the_proxy_and_writes_the_open_interaction(
    signum: signal.Signals, emulator: EmulatorThread, tmp_path: Path
) -> None:
    log_dir, console = tmp_path / "log", tmp_path / "console.txt"
    argv = [str(OLLAMA_WIRE), "proxy", "--listen", "127.0.0.1:0", "--upstream", emulator.url]
    with console.open("wb") as out:
        process = subprocess.Popen(
            [*argv, "--set", f"ollama_log_dir={log_dir}"], stdout=out, stderr=subprocess.STDOUT, cwd=tmp_path
        )
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        match = None
        while match is None and time.monotonic() < deadline and process.poll() is None:
            match = LISTENING.search(console.read_text(errors="replace"))
            time.sleep(0.05)
        assert match, console.read_text(errors="replace")
        (mitmdump,) = _mitmdump_children(process.pid)

        prompt = f"open-{uuid.uuid4().hex[:8]}"
        with ollama.Client(host=f"http://127.0.0.1:{match.group(2)}") as client:
            stream = client.generate(model=emulator.config.models[0], prompt=prompt, stream=True, options=SLOW)
            received = "".join(part.response for part, _ in zip(stream, range(3), strict=False))
            process.send_signal(signum)
            status = process.wait(STOP_TIMEOUT_S)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()

    output = console.read_text(errors="replace")
    assert status == 0, output
    # (mitmdump itself may print an asyncio CancelledError traceback for the connection still open at exit:
    # CPython's StreamReaderProtocol callback calls task.exception() on the cancelled task. Not asserted here.)
    assert "Error:" not in output
    assert not Path(f"/proc/{mitmdump}").exists(), "mitmdump outlived the command"
    (record,) = [r for r in read_log(log_dir) if r.prompt == prompt]
    assert FLAG_SHUTDOWN in record.flags and not record.complete
    assert received and record.response_text.startswith(received)


def test_a_bad_addon_option_stops_the_proxy_with_its_reason(tmp_path: Path) -> None:
    """``--set ollama_*`` reaches the addon: a bad value is refused at start-up, named, and the command fails."""
    done = subprocess.run(
        [str(OLLAMA_WIRE), "proxy", "--listen", "127.0.0.1:0", "--set", "ollama_redact=bogus"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=60,
    )
    assert done.returncode == 1
    assert "ollama_redact=bogus: not one of none, images, hash, drop" in done.stdout
    assert done.stderr.splitlines()[-1] == "Error: mitmdump exited with status 1 (its messages are above)"
