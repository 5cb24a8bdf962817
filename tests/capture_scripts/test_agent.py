"""Rendered launchd plist and systemd unit: structure, absolute paths, and validation by the real tools."""

from __future__ import annotations

import configparser
import plistlib
import shutil
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from capture_scripts import agent
from capture_scripts.cli import cli
from capture_scripts.config import parse_config

EXE = Path("/opt/ollama wire/bin/ollama-capture")


def _config(tmp_path: Path):  # type: ignore[no-untyped-def]
    config = parse_config(f"state_dir: {tmp_path}/state\nports: [11434, 8080]\n")
    config.source = tmp_path / "capture.yaml"
    return config


def test_launchd_plist_runs_the_loop_with_absolute_paths(tmp_path: Path) -> None:
    plist = plistlib.loads(agent.render_launchd(_config(tmp_path), EXE))
    assert plist["Label"] == agent.LAUNCHD_LABEL
    assert plist["ProgramArguments"] == [str(EXE), "run", "--config", str(tmp_path / "capture.yaml")]
    assert all(Path(p).is_absolute() for p in (plist["ProgramArguments"][0], plist["ProgramArguments"][3]))
    assert plist["RunAtLoad"] is True and plist["KeepAlive"] == {"SuccessfulExit": False}
    assert "StartInterval" not in plist
    assert plist["StandardOutPath"] == f"{tmp_path}/state/agent.out.log"
    assert plist["StandardErrorPath"] == f"{tmp_path}/state/agent.err.log"
    assert plist["ExitTimeOut"] >= 40  # time to finish the current snapshot after SIGTERM


def test_launchd_plist_passes_plutil_when_available(tmp_path: Path) -> None:
    if shutil.which("plutil") is None:
        pytest.skip("plutil exists on macOS only")
    path = tmp_path / "a.plist"
    path.write_bytes(agent.render_launchd(_config(tmp_path), EXE))
    assert subprocess.run(["plutil", "-lint", str(path)], check=False).returncode == 0


def test_systemd_unit_parses_and_quotes_the_path(tmp_path: Path) -> None:
    units = agent.render_systemd(_config(tmp_path), EXE)
    assert list(units) == [agent.SYSTEMD_UNIT]
    parser = configparser.ConfigParser(strict=True, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(units[agent.SYSTEMD_UNIT])
    assert parser.sections() == ["Unit", "Service", "Install"]
    assert parser["Service"]["ExecStart"] == f'"{EXE}" run --config {tmp_path}/capture.yaml'
    assert parser["Service"]["Type"] == "simple" and parser["Service"]["Restart"] == "on-failure"
    assert parser["Install"]["WantedBy"] == "default.target"


def test_systemd_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze not installed")
    exe = tmp_path / "ollama-capture"  # verify checks that ExecStart's program exists and is executable
    exe.write_text("#!/bin/sh\n")
    exe.chmod(0o755)
    unit = tmp_path / agent.SYSTEMD_UNIT
    unit.write_text(agent.render_systemd(_config(tmp_path), exe)[agent.SYSTEMD_UNIT])
    done = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, check=False)
    problems = [line for line in done.stderr.splitlines() if agent.SYSTEMD_UNIT in line or "Unknown" in line]
    assert done.returncode == 0 and problems == [], done.stderr


@pytest.mark.parametrize("flag", ["--launchd", "--systemd"])
def test_agent_install_print_writes_files_to_stdout_only(tmp_path: Path, flag: str) -> None:
    cfg = tmp_path / "capture.yaml"
    cfg.write_text("duration: 30\n")
    result = CliRunner().invoke(cli, ["agent", "install", flag, "--print", "--config", str(cfg)])
    assert result.exit_code == 0, result.output
    if flag == "--launchd":
        assert plistlib.loads(result.stdout.encode())["ProgramArguments"][1:] == ["run", "--config", str(cfg)]
    else:
        assert "ExecStart=" in result.stdout and f"run --config {cfg}" in result.stdout
    assert not (tmp_path / "Library").exists()


def test_install_calls_the_service_manager(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "cfg"))
    calls: list[list[str]] = []

    def fake(argv):  # type: ignore[no-untyped-def]
        calls.append(list(argv))
        return subprocess.CompletedProcess(argv, 0, "Linger=no\n", "")

    config = _config(tmp_path)
    done = agent.install("systemd", config, run=fake)
    assert (tmp_path / "cfg/systemd/user" / agent.SYSTEMD_UNIT).exists()
    assert ["systemctl", "--user", "enable", "--now", agent.SYSTEMD_UNIT] in calls
    assert any("enable-linger" in line for line in done)
    calls.clear()
    agent.install("launchd", config, run=fake)
    assert calls[-1][:2] == ["launchctl", "bootstrap"] and calls[-1][2].startswith("gui/")
    assert plistlib.loads(Path(calls[-1][3]).read_bytes())["Label"] == agent.LAUNCHD_LABEL
