"""The report on records whose resource columns were really sampled: the official ollama client → a real mitmdump
with the addon sampling the server process (the emulator, by its listening port) → the addon's log →
``ollama-wire report --json --prices`` and the page. This machine has no GPU: RSS and CPU are what samples, so
the page draws exactly those two tracks and energy (hence its cost) stays unknown."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import TYPE_CHECKING

import ollama
import pytest
from click.testing import CliRunner

from analyzer.cli.main import cli

if TYPE_CHECKING:
    from tests.conftest import EmulatorFactory
    from tests.e2e.conftest import MitmdumpFactory

PRICES = "kwh: 0.30\nmodels:\n  llama3.2: {input: 0.20, output: 0.60}\n"


def test_sampled_records_give_tracks_and_costs(
    emulator_factory: EmulatorFactory,
    mitmdump_factory: MitmdumpFactory,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OLLAMA_WIRE_CONFIG", str(tmp_path / "no-config.yaml"))
    server = emulator_factory(prefill_ms=60.0, token_ms=8.0, tokens=40)
    proxy = mitmdump_factory(server, options=["ollama_resources=process,host", "ollama_resources_interval=50"])
    client = ollama.Client(host=proxy.url, timeout=30.0)
    for i in range(3):
        for _ in client.generate(model="llama3.2:1b", prompt=f"tracks-e2e {i}", stream=True):
            pass
    records = proxy.wait_for("tracks-e2e", count=3)
    assert all(r.server_rss_max_mb is not None and r.server_cpu_ms is not None for r in records)
    assert all(r.energy_j is None and r.gpu_util_mean_pct is None for r in records)  # no GPU, no power source
    prices = tmp_path / "prices.yaml"
    prices.write_text(PRICES, encoding="utf-8")

    result = CliRunner().invoke(cli, ["report", str(proxy.log_dir), "--json", "--prices", str(prices)])
    assert result.exit_code == 0, result.output
    head = json.loads(result.stdout)["headline"]
    assert head["sampled_requests"] == 3 and head["energy_j"] is None and head["joules_per_token"] is None
    assert head["server_rss_max_mb"] == round(max(r.server_rss_max_mb or 0.0 for r in records), 1)
    # llama3.2:1b is priced as llama3.2 (the name before the tag); energy has no price without energy_j
    expected = sum((r.prompt_eval_count or 0) * 0.20 + (r.eval_count or 0) * 0.60 for r in records) / 1e6
    assert head["cost_api_usd"] == pytest.approx(expected, abs=1e-9) and head["cost_api_requests"] == 3
    assert head["cost_energy_usd"] is None and head["cost_energy_requests"] == 0

    page = tmp_path / "page.html"
    result = CliRunner().invoke(cli, ["report", str(proxy.log_dir), "-o", str(page)])
    assert result.exit_code == 0, result.output
    html = page.read_text(encoding="utf-8")
    data = json.loads(re.search(r'id="report-data">(.*?)</script>', html, re.S).group(1))  # type: ignore[union-attr]
    timeline = next(f for f in data["figures"] if f["id"] == "timeline")
    assert timeline["parts"] == {"xy": 6, "xy2": 3, "xy3": 3}  # bars + first-token ticks; RSS; CPU cores
    titles = [timeline["layout"][f"yaxis{i}"]["title"]["text"] for i in (2, 3)]
    assert titles == ["RSS MB", "CPU cores"]
    assert "no resource samples" not in html
