"""No record is silently lost when the log cannot be written: a real full filesystem (a small tmpfs) and
a log directory removed and recreated under a running mitmdump with the addon.

The addon keeps unwritten records in memory, retries, writes them once the log is writable again, warns
once per outage with a count, and at shutdown saves what is left to a fallback file named in the warning.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import ollama
import pytest

from analyzer.emulator import EmulatorThread
from analyzer.protocol.record import InteractionRecord
from analyzer.store.log import InteractionLog, read_log
from analyzer.store.writer import RecordWriter

MODEL = "llama3.2:1b"
IS_ROOT = os.geteuid() == 0
OUTAGE = re.compile(r"records still unwritten at shutdown go to (\S+)")


def _wait(predicate: Callable[[], object], what: str, bound: float = 20.0) -> None:
    deadline = time.monotonic() + bound
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not reached within {bound} s")
        time.sleep(0.05)


def _stream(proxy: Any, prompt: str) -> str:
    client = ollama.Client(host=proxy.url, timeout=30)
    return "".join(part.response for part in client.generate(model=MODEL, prompt=prompt, stream=True))


def _by_prompt(records: list[InteractionRecord], prefix: str) -> dict[str, list[InteractionRecord]]:
    found: dict[str, list[InteractionRecord]] = {}
    for record in records:
        if record.prompt and record.prompt.startswith(prefix):
            found.setdefault(record.prompt, []).append(record)
    return found


@contextlib.contextmanager
def tmpfs(path: Path, size: str) -> Iterator[Path]:
    path.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(path)], check=True)
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def fill(directory: Path) -> Path:
    """Fill the file system holding ``directory`` to the last byte; returns the filler file."""
    filler = directory / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        for size in (65536, 4096, 1):
            with contextlib.suppress(OSError):
                while os.write(fd, b"\0" * size):
                    pass
    finally:
        os.close(fd)
    return filler


@pytest.mark.root
@pytest.mark.skipif(not IS_ROOT, reason="mounting a tmpfs needs root")
def test_full_disk_outage_loses_no_record(
    tmp_path: Path, emulator: EmulatorThread, mitmdump_factory: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))  # where mitmdump's fallback file goes
    with tmpfs(tmp_path / "small", "256k") as mount:
        log_dir = mount / "log"
        proxy = mitmdump_factory(emulator, options=[f"ollama_log_dir={log_dir}"])
        assert _stream(proxy, "before outage")
        _wait(lambda: read_log(log_dir), "first record")
        filler = fill(mount)
        texts = {f"during outage {i}": _stream(proxy, f"during outage {i}") for i in range(5)}
        _wait(lambda: OUTAGE.search(proxy.console()), "the outage warning")
        assert len(_by_prompt(read_log(log_dir), "during outage")) < 5  # (the last page of the file had room)
        filler.unlink()  # space again: the held records are written, each exactly once
        texts["after outage"] = _stream(proxy, "after outage")
        _wait(lambda: len(_by_prompt(read_log(log_dir), "during outage")) == 5, "held records written")
        _wait(lambda: "writable again" in proxy.console(), "the end-of-outage message")
        _wait(lambda: _by_prompt(read_log(log_dir), "after outage"), "the record made after the outage")
        found = _by_prompt(read_log(log_dir), "")
        for prompt, text in texts.items():
            assert [r.response_text for r in found[prompt]] == [text], prompt
        console = proxy.console()
        assert console.count("records still unwritten at shutdown go to") == 1  # one warning per outage
        assert re.search(r"wrote the records held during the outage \([1-5]\)", console)

        # A second outage that lasts until shutdown: the records go to the fallback file it named.
        filler = fill(mount)
        for i in range(3):
            _stream(proxy, f"until shutdown {i}")
        _wait(lambda: len(OUTAGE.findall(proxy.console())) == 2, "the second outage warning")
        proxy.stop()
        fallback = Path(OUTAGE.findall(proxy.console())[-1])
        assert fallback.is_relative_to(tmp_path / "state")
        assert oct(fallback.stat().st_mode & 0o777) == "0o600"
        saved = _by_prompt(read_log_file(fallback), "until shutdown")
        logged = _by_prompt(read_log(log_dir), "until shutdown")
        assert saved and not set(saved) & set(logged)  # each record in exactly one of the two places
        assert sorted([*saved, *logged]) == [f"until shutdown {i}" for i in range(3)]
        assert all(len(v) == 1 for v in [*saved.values(), *logged.values()])
        assert f"{len(saved)} record(s) could not be written to {log_dir}: saved to {fallback}" in proxy.console()
        filler.unlink()


def read_log_file(path: Path) -> list[InteractionRecord]:
    """Records of one JSONL file (the fallback file has the log's format)."""
    directory = path.parent / "as-log"
    directory.mkdir(exist_ok=True)
    shutil.copy(path, directory / "2000-01-01.jsonl")
    return read_log(directory)


def test_log_directory_removed_and_recreated_under_running_mitmdump(
    tmp_path: Path, emulator: EmulatorThread, mitmdump_factory: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    log_dir = tmp_path / "log"
    proxy = mitmdump_factory(emulator, options=[f"ollama_log_dir={log_dir}"])
    texts = {"first": _stream(proxy, "first")}
    _wait(lambda: read_log(log_dir), "first record")
    shutil.rmtree(log_dir)  # removed: the next record recreates it
    texts["after removal"] = _stream(proxy, "after removal")
    _wait(lambda: log_dir.is_dir() and _by_prompt(read_log(log_dir), "after removal"), "record after removal")
    shutil.rmtree(log_dir)
    log_dir.write_text("not a directory")  # now it cannot be recreated: an outage
    texts.update({f"while gone {i}": _stream(proxy, f"while gone {i}") for i in range(3)})
    _wait(lambda: OUTAGE.search(proxy.console()), "the outage warning")
    log_dir.unlink()
    log_dir.mkdir()  # recreated by hand: the held records arrive
    _wait(lambda: len(_by_prompt(read_log(log_dir), "while gone")) == 3, "held records written")
    proxy.stop()
    held = _by_prompt(read_log(log_dir), "while gone")
    assert {p: [r.response_text for r in rs] for p, rs in held.items()} == {
        p: [t] for p, t in texts.items() if p.startswith("while gone")
    }
    assert not (tmp_path / "state").exists()  # nothing was left for a fallback file


def _record(i: int) -> InteractionRecord:
    return InteractionRecord(id=f"r{i}", source="proxy", started_at="2026-01-01T00:00:00.000000Z", prompt=f"p{i}")


def test_writer_holds_bounded_records_and_counts_what_it_drops(tmp_path: Path) -> None:
    log_dir = tmp_path / "log"
    log_dir.write_text("a file where the directory should be")
    messages: list[str] = []
    writer = RecordWriter(InteractionLog(log_dir), max_pending=3, fallback=tmp_path / "fb.jsonl", warn=messages.append)
    for i in range(5):
        writer.submit(_record(i))
    _wait(lambda: writer.outages == 1, "outage noticed")
    assert writer.dropped == 2 and writer.pending == 3
    log_dir.unlink()
    _wait(lambda: writer.pending == 0, "written")
    assert [r.id for r in read_log(log_dir)] == ["r0", "r1", "r2"]
    _wait(lambda: any("writable again" in m for m in messages), "end message")
    assert sum("dropping new ones" in m for m in messages) == 1
    assert any("(3, 2 dropped (queue full))" in m for m in messages)
    assert writer.close() is None
