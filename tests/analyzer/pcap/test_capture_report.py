"""``ollama-wire report`` on real captures: a segment the capture lost and a capture window that ends mid-stream
give the ``capture_loss`` finding naming exactly the damaged exchanges; the whole capture gives none.

The captures are the session's real loopback captures of the official clients (see conftest.py); the holes are
made by dropping or cutting packets of a copy.
"""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from analyzer.cli.main import cli
from analyzer.pcap.analyze import AnalyzeOptions, analyze_capture
from tests.support.damage import drop, response_packets, window
from tests.support.pcapfile import read_pcap, write_pcap
from tests.support.workload import RealCapture


def report(path: Path, port: int) -> dict[str, list[str]]:
    result = CliRunner().invoke(cli, ["report", str(path), "--port", str(port), "--json"])
    assert result.exit_code == 0, result.output
    return {f["code"]: f["ids"] for f in json.loads(result.stdout)["findings"] if f["group"] == "capture"}


def test_capture_loss_names_the_damaged_exchanges(capture_shapes: dict[str, RealCapture], tmp_path: Path) -> None:
    capture = capture_shapes["lo4"]
    pcap = read_pcap(capture.path)
    sent = capture.by_name("gen-stream")
    whole = analyze_capture(capture.path, AnalyzeOptions(ports=(capture.port,))).records
    damaged_id = next(r.id for r in whole if r.prompt == sent.prompt)  # pcap ids survive damage elsewhere
    assert report(capture.path, capture.port) == {}

    response = response_packets(pcap, capture.port, sent.prompt)
    holed = write_pcap(tmp_path / "holed.pcap", pcap, drop(pcap.packets, response[len(response) // 2]))
    assert report(holed, capture.port) == {"capture_loss": [damaged_id]}

    cut_at = response[len(response) // 2]
    cut = write_pcap(tmp_path / "cut.pcap", pcap, window(pcap.packets, 0, cut_at))
    found = report(cut, capture.port)
    assert damaged_id in found["capture_loss"]
    later = {r.id for r in whole if r.started_at > next(x.started_at for x in whole if x.id == damaged_id)}
    assert not later & set(found["capture_loss"]), "exchanges after the cut are not in the capture at all"
