"""Samplers measure what they say (issue 17 item 5), on real child processes and the documented fixture formats:
powermetrics' per-sample energy is the energy, a child's stderr never stalls its readings, a runner that lives a
moment is counted with the CPU it used, and provenance reaches the records."""

from __future__ import annotations

import plistlib
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from analyzer.protocol.record import InteractionRecord
from analyzer.resources.attribution import Activity, attribute_records, resource_columns
from analyzer.resources.macmon import MacmonSampler
from analyzer.resources.powermetrics import PowermetricsSampler
from analyzer.resources.process import ProcessSampler
from analyzer.resources.timeline import Sample, Timeline

FIXTURES = Path(__file__).parent / "fixtures"


def _fixture_energy_j(name: str) -> float:
    """Sum of every complete sample's cpu/gpu/ane energy (mJ) in a powermetrics fixture, read with plistlib."""
    total = 0.0
    for chunk in (FIXTURES / name).read_bytes().split(b"\x00"):
        try:
            sample = plistlib.loads(chunk.strip(b"\x00\n "))
        except Exception:
            continue
        processor = sample.get("processor", {})
        for part in ("cpu", "gpu", "ane"):
            value = processor.get(f"{part}_energy")
            if value is None and part == "gpu":
                value = sample.get("gpu", {}).get("gpu_energy")
            total += value or 0
    return total / 1000


@pytest.mark.parametrize(
    "name", ["powermetrics-macos14-cpu_gpu_ane_power.plists", "powermetrics-macos12-cpu_gpu_power.plists"]
)
def test_powermetrics_energy_is_its_per_sample_energy(name: str) -> None:
    expected = _fixture_energy_j(name)
    assert expected > 0
    sampler = PowermetricsSampler(command=["cat", str(FIXTURES / name)])
    sampler.open()
    try:
        deadline = time.monotonic() + 5
        while sampler.records < 1 or (sampler._thread is not None and sampler._thread.is_alive()):
            assert time.monotonic() < deadline
            time.sleep(0.02)
        values = sampler.read()
    finally:
        sampler.close()
    assert values["energy_j"] == pytest.approx(expected)
    assert values["energy_source:powermetrics"] == 1.0
    # the timeline keeps a real counter as it is (never re-integrated from power)
    timeline = Timeline()
    timeline.add(0.0, {"power_w": 50.0, "energy_j": 0.0, "energy_source:powermetrics": 1.0})
    timeline.add(1.0, {"power_w": 50.0, "energy_j": values["energy_j"], "energy_source:powermetrics": 1.0})
    columns = resource_columns(Activity("a", 0.0, 1.0), [], timeline.samples(), eval_count=10)
    assert columns["energy_j"] == pytest.approx(expected) and columns["energy_source"] == "powermetrics"


def test_integrated_power_says_so() -> None:
    timeline = Timeline()
    timeline.add(0.0, {"power_w": 100.0})
    timeline.add(2.0, {"power_w": 100.0})
    columns = resource_columns(Activity("a", 0.0, 2.0), [], timeline.samples(), eval_count=20)
    assert columns["energy_j"] == pytest.approx(200.0) and columns["energy_source"] == "power_integral"
    assert resource_columns(Activity("a", 0.0, 2.0), [], [Sample(0, {"ollama_vram_mb": 900.0})])["gpu_mem_source"] == (
        "ollama_ps"
    )


def test_a_chatty_stderr_never_stalls_the_readings() -> None:
    script = textwrap.dedent(
        """
        import sys, time
        sys.stderr.write("warning: " + "x" * 1_000_000 + "\\n"); sys.stderr.flush()
        print('{"gpu_active_ratio": 0.5, "gpu_power": 2.0}', flush=True)
        time.sleep(5)
        """
    )
    sampler = MacmonSampler(command=[sys.executable, "-c", script])
    sampler.open()  # Unavailable when the child blocks on a full stderr pipe before its first line
    try:
        assert sampler.read()["gpu_util_pct"] == pytest.approx(50.0)
        assert sampler.stderr_tail.endswith("x" * 100 + "\n")
    finally:
        sampler.close()


@pytest.fixture
def server_with_short_runner(tmp_path: Path) -> Iterator[tuple[int, Path]]:
    """A process listening on a loopback port that, when ``go`` appears, starts a child which burns ~0.6 s of CPU
    and exits (like a runner whose load fails), and reaps it."""
    go = tmp_path / "go"
    script = textwrap.dedent(
        f"""
        import os, socket, subprocess, sys, time
        s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen()
        print(s.getsockname()[1], flush=True)
        while not os.path.exists({str(go)!r}): time.sleep(0.01)
        child = subprocess.Popen([sys.executable, "-c",
            "import time\\nend = time.process_time() + 0.6\\nwhile time.process_time() < end: pass"])
        child.wait()
        time.sleep(30)
        """
    )
    process = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        port = int(process.stdout.readline())
        yield port, go
    finally:
        process.kill()
        process.wait(timeout=5)


def test_a_runner_that_lives_a_moment_is_counted(server_with_short_runner: tuple[int, Path]) -> None:
    port, go = server_with_short_runner
    sampler = ProcessSampler(port)
    sampler.open()
    try:
        before = sampler.read()["cpu_s"]
        go.touch()
        seen_child = False
        deadline = time.monotonic() + 10
        after = before
        while time.monotonic() < deadline:
            time.sleep(0.1)
            seen_child = seen_child or len(sampler.details()["processes"]) > 1  # type: ignore[arg-type]
            after = sampler.read()["cpu_s"]
            if after - before >= 0.55:
                break
        assert after - before >= 0.55, (before, after)
    finally:
        sampler.close()


def test_unknown_duration_gets_no_resource_columns() -> None:
    timeline = Timeline()
    for t in range(5):
        timeline.add(1_000_000_000.0 + t, {"power_w": 100.0, "cpu_s": float(t)})
    known = InteractionRecord(id="k", started_at="2001-09-09T01:46:40Z", total_ms=2000.0, eval_count=10)
    unknown = InteractionRecord(id="u", started_at="2001-09-09T01:46:41Z", total_ms=None, eval_count=10)
    attribute_records([known, unknown], timeline)
    assert known.energy_j and known.energy_source == "power_integral"
    assert (unknown.energy_j, unknown.joules_per_token, unknown.server_cpu_ms, unknown.energy_source) == (None,) * 4
