"""The sources' parsers on their tools' real output formats, and each source saying why it is unavailable here.

Fixtures (tests/analyzer/resources/fixtures), named for the tool version they follow:
- ``macmon-0.8.2-pipe.jsonl``: ``macmon pipe`` lines as macmon 0.8.2's readme and src_app/main.rs print them
  (``gpu_active_ratio``, powers in W, ``memory.ram_usage`` bytes, the v0.7 aliases alongside);
- ``macmon-0.7-pipe.jsonl``: the older shape (``gpu_usage: [MHz, ratio]``, no ``*_active_ratio``);
- ``powermetrics-macos14-*.plists``: ``powermetrics --samplers cpu_power,gpu_power,ane_power -f plist``, NUL between
  samples, keys as asitop's parsers.py reads them (``processor.cpu_power`` mW, ``*_energy`` mJ, ``gpu.idle_ratio``,
  ``elapsed_ns``); the stream ends cut mid-sample, as when powermetrics is stopped;
- ``powermetrics-macos12-*.plists``: older macOS without ``*_power`` keys: power is energy / elapsed time.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from analyzer.resources.base import Unavailable
from analyzer.resources.macmon import MacmonSampler, parse_macmon_line
from analyzer.resources.ollama_ps import parse_ps
from analyzer.resources.powermetrics import PowermetricsSampler, parse_powermetrics_stream
from analyzer.resources.process import ProcessSampler, memory_pressure
from analyzer.resources.registry import Target, open_samplers, parse_spec

FIXTURES = Path(__file__).parent / "fixtures"


def test_macmon_0_8_line() -> None:
    first = parse_macmon_line((FIXTURES / "macmon-0.8.2-pipe.jsonl").read_text().splitlines()[0])
    assert first is not None
    assert first["gpu_util_pct"] == pytest.approx(93.0)  # gpu_active_ratio, not the frequency-scaled ratio
    assert first["gpu_power_w"] == pytest.approx(14.517451683)
    assert first["power_w"] == pytest.approx(1.20486385 + 14.517451683 + 0.0)
    assert first["host_mem_used_pct"] == pytest.approx(100 * 20985479168 / 25769803776)


def test_macmon_0_7_gpu_usage_is_not_busy_share() -> None:
    values = parse_macmon_line((FIXTURES / "macmon-0.7-pipe.jsonl").read_text())
    assert values is not None
    # gpu_usage[1] is active residency scaled by frequency: kept under its own name, never as gpu_util_pct
    assert "gpu_util_pct" not in values
    assert values["gpu_freq_scaled_pct"] == pytest.approx(2.1497859)
    assert values["cpu_power_w"] == pytest.approx(0.20486385)
    assert values["energy_source:macmon"] == 1.0


def test_macmon_line_that_is_not_a_reading() -> None:
    assert parse_macmon_line("[]") is None
    assert parse_macmon_line('{"timestamp": "x"}') is None
    with pytest.raises(ValueError):
        parse_macmon_line("not json")


def test_powermetrics_modern_stream_skips_the_cut_sample() -> None:
    readings = parse_powermetrics_stream((FIXTURES / "powermetrics-macos14-cpu_gpu_ane_power.plists").read_bytes())
    assert len(readings) == 2
    assert readings[0]["gpu_util_pct"] == pytest.approx(93.0)
    assert readings[0]["gpu_power_w"] == pytest.approx(14.5)
    assert readings[1]["ane_power_w"] == pytest.approx(0.035)
    assert readings[1]["power_w"] == pytest.approx(1.1 + 13.9 + 0.035)


def test_powermetrics_older_stream_derives_power_from_energy() -> None:
    (reading,) = parse_powermetrics_stream((FIXTURES / "powermetrics-macos12-cpu_gpu_power.plists").read_bytes())
    assert reading["cpu_power_w"] == pytest.approx(0.9)  # 900 mJ over elapsed_ns = 1 s
    assert reading["gpu_power_w"] == pytest.approx(8.0)
    assert reading["gpu_util_pct"] == pytest.approx(75.0)


def test_ps_answer() -> None:
    body = (
        '{"models":[{"name":"llama3.2:1b","model":"llama3.2:1b","size":1300000000,"digest":"a",'
        '"details":{},"expires_at":"2026-11-30T22:00:00.1Z","size_vram":1000000000}]}'
    )
    (model,) = parse_ps(body)
    assert model == {
        "name": "llama3.2:1b",
        "size": 1300000000,
        "size_vram": 1000000000,
        "expires_at": "2026-11-30T22:00:00.1Z",
    }
    with pytest.raises(ValueError):
        parse_ps('{"error": "x"}')


def test_memory_pressure_reads_psi(tmp_path: Path) -> None:
    psi = tmp_path / "memory"
    psi.write_text(
        "some avg10=1.25 avg60=0.50 avg300=0.10 total=12345\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=0\n"
    )
    assert memory_pressure(psi) == 1.25
    assert memory_pressure(tmp_path / "absent") is None


# --------------------------------------------------------------------------- child-process sources


def _printer(path: Path, separator: str, linger_s: float = 5.0) -> list[str]:
    """A child that prints a fixture's records the way the tool does, then stays alive like it would."""
    code = (
        "import sys, time\n"
        f"data = open({str(path)!r}, 'rb').read()\n"
        "sys.stdout.buffer.write(data); sys.stdout.flush()\n"
        f"time.sleep({linger_s})\n"
    )
    return [sys.executable, "-c", code]


def test_macmon_sampler_reads_a_running_child() -> None:
    sampler = MacmonSampler(command=_printer(FIXTURES / "macmon-0.8.2-pipe.jsonl", "\n"))
    sampler.open()
    try:
        reading = sampler.read()
        assert reading["gpu_util_pct"] == pytest.approx(88.0)  # the newest line
        assert sampler.details()["readings"] == 2
    finally:
        sampler.close()


def test_powermetrics_sampler_reads_nul_separated_plists() -> None:
    sampler = PowermetricsSampler(command=_printer(FIXTURES / "powermetrics-macos14-cpu_gpu_ane_power.plists", "\0"))
    sampler.open()
    try:
        assert sampler.read()["ane_power_w"] == pytest.approx(0.035)
    finally:
        sampler.close()


def test_a_child_that_fails_is_unavailable_with_its_message() -> None:
    command = [
        sys.executable,
        "-c",
        "import sys; sys.stderr.write('powermetrics must be invoked as the superuser\\n'); sys.exit(1)",
    ]
    sampler = PowermetricsSampler(command=command)
    with pytest.raises(Unavailable, match="must be invoked as the superuser"):
        sampler.open()


def test_a_missing_program_is_unavailable() -> None:
    with pytest.raises(Unavailable, match="cannot run"):
        MacmonSampler(command=["/nonexistent/macmon", "pipe"]).open()


@pytest.mark.skipif(sys.platform == "darwin", reason="checks the non-Mac message")
def test_mac_sources_say_why_not_here() -> None:
    opened = open_samplers("macmon,powermetrics", Target())
    assert opened.samplers == []
    assert "macOS" in opened.unavailable["macmon"] and "macOS" in opened.unavailable["powermetrics"]


def test_nothing_listening_is_said(unused_port: int) -> None:
    with pytest.raises(Unavailable, match=f"nothing listens on port {unused_port}"):
        ProcessSampler(unused_port).open()


def test_spec() -> None:
    assert parse_spec("auto") is None and parse_spec("off") == []
    assert parse_spec("process, nvidia,process") == ["process", "nvidia"]
    with pytest.raises(ValueError, match="unknown resource source 'gpu'"):
        parse_spec("gpu")


@pytest.fixture
def unused_port() -> int:
    from analyzer.recorder.process import free_port

    return free_port()
