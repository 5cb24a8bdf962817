"""The export addon's settings in a real mitmdump: bad ones stop it with one line, good ones serve /metrics."""

from __future__ import annotations

import re
import socket
import subprocess
import urllib.request
from pathlib import Path

import pytest

from analyzer.recorder.process import MitmdumpProcess, free_port


def _mitmdump(tmp_path: Path, **settings: str) -> MitmdumpProcess:
    upstream = f"http://127.0.0.1:{free_port()}"  # never contacted: no request is made
    return MitmdumpProcess(
        upstream, options={"ollama_log_dir": str(tmp_path / "log"), **settings}, console_path=tmp_path / "console.txt"
    )


def _exit_output(proxy: MitmdumpProcess) -> tuple[int, str]:
    with proxy.console_path.open("wb") as console:
        process = subprocess.Popen(proxy.command(), stdout=console, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        try:
            returncode = process.wait(60)  # a bound, not a speed check: it must exit on its own
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
    return returncode, proxy.console()


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("ollama_otlp_endpoint", "collector:4318"),
        ("ollama_prometheus", "9464"),
        ("ollama_prometheus", "127.0.0.1:99999"),
        ("ollama_prometheus", "metrics.example:9464"),
        ("ollama_export_content", "maybe"),
        ("ollama_promethues", "127.0.0.1:9464"),
        ("ollama_label_limit", "0"),
        ("ollama_label_limit", "many"),
    ],
)
def test_bad_export_setting_stops_mitmdump_with_one_line(tmp_path: Path, name: str, value: str) -> None:
    returncode, output = _exit_output(_mitmdump(tmp_path, **{name: value}))
    lines = [line for line in output.splitlines() if "ollama_log:" in line]
    assert returncode != 0, output
    assert len(lines) == 1 and f"{name}={value}" in lines[0], output
    assert "Traceback" not in output


def test_a_busy_prometheus_port_is_refused(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        address = f"127.0.0.1:{busy.getsockname()[1]}"
        returncode, output = _exit_output(_mitmdump(tmp_path, ollama_prometheus=address))
    assert returncode != 0 and f"ollama_prometheus={address}: cannot listen" in output, output
    assert "Traceback" not in output


def test_good_settings_serve_metrics_and_exit_cleanly(tmp_path: Path) -> None:
    port = free_port()
    proxy = _mitmdump(
        tmp_path,
        ollama_prometheus=f"127.0.0.1:{port}",
        ollama_otlp_endpoint=f"http://127.0.0.1:{free_port()}",  # nobody there: must not matter
        ollama_export_content="true",
    )
    with proxy:
        page = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
        assert 'ollama_requests_in_flight{gen_ai_operation_name="chat",gen_ai_provider_name="ollama"} 0' in page
        assert re.search(r'^target_info\{.*service_name="ollama-wire"', page, re.M), page
    assert proxy.process is not None and proxy.process.returncode == 0, proxy.console()
