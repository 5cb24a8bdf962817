"""Runner behaviour with real files and real processes: retention, lock, signals, state, analysis."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from capture_support import IS_ROOT, needs_root

from capture_scripts.config import Retention, parse_config
from capture_scripts.runner import LockHeld, apply_retention, runner_lock
from capture_scripts.snapshot import count_packets

CLI = [sys.executable, "-c", "from capture_scripts.cli import main; main()"]
PROJECT = Path(__file__).resolve().parents[2]


def _snap(directory: Path, name: str, size: int, age: float) -> Path:
    path = directory / name
    path.write_bytes(b"\0" * size)
    stamp = time.time() - age
    os.utime(path, (stamp, stamp))
    return path


def test_retention_removes_oldest_first_and_keeps_the_newest(tmp_path: Path) -> None:
    files = [_snap(tmp_path, f"ollama-2025010{i}T000000Z.pcap", 100, age=1000 - i * 100) for i in range(6)]
    other = _snap(tmp_path, "notes.txt", 10, age=10**6)
    partial = _snap(tmp_path, ".ollama-x.pcap.1.partial", 10, age=10**6)
    assert apply_retention(tmp_path, Retention(max_files=4, max_bytes=None, max_age=None)) == files[:2]
    assert apply_retention(tmp_path, Retention(max_files=None, max_bytes=250, max_age=None)) == files[2:4]
    assert apply_retention(tmp_path, Retention(max_files=None, max_bytes=None, max_age=450)) == [files[4]]
    # The newest stays even if it alone breaks every limit.
    assert apply_retention(tmp_path, Retention(max_files=1, max_bytes=1, max_age=1)) == []
    assert sorted(tmp_path.iterdir()) == sorted([files[5], other, partial])


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(PROJECT)}


def test_lock_is_exclusive_across_processes_and_released_on_death(tmp_path: Path) -> None:
    lock = tmp_path / "capture.lock"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time\nfrom pathlib import Path\n"
         "from capture_scripts.runner import runner_lock\n"
         f"with runner_lock(Path({str(lock)!r})):\n    print('held', flush=True)\n    time.sleep(120)\n"],
        stdout=subprocess.PIPE, text=True, env=_env(),
    )  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with pytest.raises(LockHeld, match=f"pid {holder.pid}"), runner_lock(lock):
            pass
    finally:
        holder.kill()
        holder.wait()
    with runner_lock(lock):  # the kernel dropped the dead holder's lock
        pass


def _write_config(tmp_path: Path, extra: str) -> Path:
    cfg = tmp_path / "capture.yaml"
    cfg.write_text(f"output_dir: {tmp_path}/out\nstate_dir: {tmp_path}/state\nmethod: direct\ninterface: lo\n{extra}")
    return cfg


def _state(tmp_path: Path) -> dict[str, Any]:
    return json.loads((tmp_path / "state" / "capture-state.json").read_text())


def _wait_for(predicate: Any, bound: float = 30.0) -> None:
    deadline = time.monotonic() + bound
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached")
        time.sleep(0.05)


@pytest.mark.root
@pytest.mark.live
@needs_root
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_signal_finishes_the_current_snapshot_and_stops(tmp_path: Path, signum: int) -> None:
    cfg = _write_config(tmp_path, "ports: [9]\nduration: 300\ninterval: 600\n")
    proc = subprocess.Popen([*CLI, "run", "--config", str(cfg)], stderr=subprocess.PIPE, text=True, env=_env())
    try:
        out = tmp_path / "out"
        # Signal once tcpdump has written its header (the capture is under way), so the snapshot is finished.
        _wait_for(lambda: out.is_dir() and any(p.name.endswith(".partial") and p.stat().st_size >= 24
                                               for p in out.iterdir()))  # fmt: skip
        proc.send_signal(signum)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    snaps = sorted(out.glob("ollama-*.pcap"))
    assert len(snaps) == 1 and [p for p in out.iterdir() if p.name.endswith(".partial")] == []
    assert count_packets(snaps[0]) == 0 and snaps[0].stat().st_size == 24
    state = _state(tmp_path)
    assert state["snapshots"] == 1 and state["last_snapshot"]["stopped_early"] is True
    assert state["runner_pid"] is None
    assert f"runner stopped ({signal.Signals(signum).name})" in (tmp_path / "state" / "capture.log").read_text()


@pytest.mark.root
@pytest.mark.live
@needs_root
def test_run_loop_with_retention_state_status_and_analysis(tmp_path: Path, emulator: Any, traffic: Any) -> None:
    cfg = _write_config(
        tmp_path,
        f"ports: [{emulator.port}]\nduration: 2\ninterval: 3\nretention:\n  max_files: 2\n"
        f"analyze: true\nlog_dir: {tmp_path}/logs\n",
    )
    with traffic():
        done = subprocess.run(
            [*CLI, "run", "--config", str(cfg), "--max-snapshots", "3"], capture_output=True, text=True,
            env=_env(), timeout=120,
        )  # fmt: skip
    assert done.returncode == 0, done.stderr
    snaps = sorted((tmp_path / "out").glob("ollama-*.pcap"))
    assert len(snaps) == 2  # three taken, retention kept two
    assert all(count_packets(p) > 0 for p in snaps)
    state = _state(tmp_path)
    assert state["snapshots"] == 3 and state["removed"] == 1 and state.get("failures", 0) == 0
    log = (tmp_path / "state" / "capture.log").read_text().splitlines()
    assert all(line[:4].isdigit() and line[10] == "T" for line in log)
    assert "last_error" not in state, state.get("last_error")
    assert state["analyzed_records"] > 0
    from analyzer.store.log import read_log

    records = read_log(tmp_path / "logs")  # the hand-off wrote real records of the emulator's traffic
    assert len(records) == state["analyzed_records"]
    # a snapshot window can open after a request's first bytes (traffic runs all the time): such a record has
    # no request line and must say why; every other one is the emulator traffic's
    cut = {"capture_started_mid_request", "capture_started_mid_response"}
    whole = [r for r in records if not cut & set(r.flags)]
    assert whole and {r.path for r in whole} == {"/api/generate"}
    assert {r.path for r in records if r not in whole} <= {"", "/api/generate"}
    # Each kept snapshot has its resource timeline beside it (the removed one's went with it), joined by time:
    # the process listening on the emulator's port (this test process) was sampled through every request.
    timelines = sorted((tmp_path / "out").glob("*.resources.jsonl"))
    assert [t.name.replace(".resources.jsonl", ".pcap") for t in timelines] == [p.name for p in snaps]
    assert all(r.server_rss_max_mb is not None and r.server_cpu_ms is not None for r in records)
    status = subprocess.run([*CLI, "status", "--config", str(cfg)], capture_output=True, text=True, env=_env())
    assert status.returncode == 0 and "snapshots:      3" in status.stdout
    assert str(snaps[-1]) in status.stdout


def test_once_without_any_way_to_capture_says_how_to_fix_it(tmp_path: Path) -> None:
    if IS_ROOT:
        pytest.skip("root can always capture")
    cfg = _write_config(tmp_path, "method: sudo\nhelper: /nonexistent/helper\n")
    done = subprocess.run([*CLI, "once", "--config", str(cfg), "--duration", "1"], capture_output=True, text=True,
                          env=_env(), timeout=60)  # fmt: skip
    assert done.returncode in (3, 4) and done.stderr.startswith("Error: ")


@pytest.mark.root
@pytest.mark.live
@needs_root
def test_signal_before_the_capture_began_discards_cleanly(tmp_path: Path) -> None:
    from capture_scripts.snapshot import SnapshotDiscarded, Snapshotter

    config = parse_config(f"output_dir: {tmp_path}/out\nstate_dir: {tmp_path}/s\nmethod: direct\nports: [9]\n")
    snapper = Snapshotter(config)
    snapper.stop()  # as if SIGTERM arrived just before the capture started
    with pytest.raises(SnapshotDiscarded):
        snapper.take(30)
    assert not (tmp_path / "out").exists() or list((tmp_path / "out").iterdir()) == []


def test_config_parse_roundtrip_for_runner_defaults() -> None:
    config = parse_config("interval: 120\nduration: 30\n")
    assert config.lock_file.name == "capture.lock" and config.log_file.name == "capture.log"
