"""analyze-pcap --tls-keylog: Ollama behind an HTTPS reverse proxy, decrypted from a real capture."""

from __future__ import annotations

import shutil
from pathlib import Path

import ollama
import pytest
from click.testing import CliRunner

from analyzer.cli.analyze import analyze_pcap
from analyzer.recorder.process import MitmdumpProcess
from tests.support.tcpdump import require_live_capture, tcpdump

needs_tshark = pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark not installed")


@pytest.mark.live
@needs_tshark
def test_https_reverse_proxy_capture_is_decrypted_with_the_key_log(emulator, tmp_path: Path, monkeypatch) -> None:
    require_live_capture()
    keylog = tmp_path / "keys.log"
    monkeypatch.setenv("SSLKEYLOGFILE", str(keylog))  # httpx (the ollama client's transport) writes TLS secrets
    # mitmproxy in reverse mode answers TLS on its listen port: an HTTPS front for the plain-HTTP emulator.
    with MitmdumpProcess(emulator.url, addon=None, console_path=tmp_path / "mitmdump.log") as front:
        https_url = front.url.replace("http://", "https://")
        pcap = tmp_path / "tls.pcap"
        with tcpdump(pcap, f"tcp port {front.port}"):
            client = ollama.Client(host=https_url, verify=False)
            streamed = "".join(
                p.response or "" for p in client.generate(model="llama3.2:1b", prompt="tls?", stream=True)
            )
            chatted = client.chat(model="llama3.2:1b", messages=[{"role": "user", "content": "secret"}]).message.content
            client._client.close()
    assert keylog.stat().st_size > 0 and streamed and chatted
    port = str(front.port)

    encrypted = CliRunner().invoke(analyze_pcap, [str(pcap), "--port", port, "--jsonl"])
    assert encrypted.exit_code == 0 and "tls?" not in encrypted.output  # ciphertext: nothing readable

    result = CliRunner().invoke(
        analyze_pcap, [str(pcap), "--tls-keylog", str(keylog), "--tls-port", port, "--responses"]
    )
    assert result.exit_code == 0, result.output
    assert _body(streamed) in result.output and _body(chatted) in result.output and "tls?" in result.output


def _body(text: str) -> str:
    """A response as ``--responses`` prints it: every line indented (it comes from traffic)."""
    return "\n".join("  " + line for line in text.split("\n"))


def test_missing_key_log_is_a_one_line_usage_error(tmp_path: Path) -> None:
    missing = tmp_path / "none.log"
    result = CliRunner().invoke(analyze_pcap, ["x.pcap", "--tls-keylog", str(missing)])
    assert result.exit_code == 2 and result.stdout == ""
    assert result.stderr.splitlines() == [
        "Usage: analyze-pcap [OPTIONS] PATHS...",
        "Try 'analyze-pcap --help' for help.",
        "",
        f"Error: Invalid value for '--tls-keylog': File '{missing}' does not exist.",
    ]
