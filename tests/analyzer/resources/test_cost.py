"""Prices files, the config file's ``prices``, and the cost columns ``logs --prices`` adds (derived, not stored)."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from analyzer.cli.main import cli
from analyzer.protocol.record import COLUMNS, InteractionRecord
from analyzer.resources.cost import PricesError, cost_columns, load_prices, prices_from_config
from analyzer.store.log import InteractionLog

PRICES = """\
kwh: 0.30
models:
  llama3.2: {input: 0.10, output: 0.40}
  llama3.2:1b: {output: 1.0}
"""


@pytest.fixture
def prices_file(tmp_path: Path) -> Path:
    path = tmp_path / "prices.yaml"
    path.write_text(PRICES)
    return path


def test_costs_from_energy_and_tokens(prices_file: Path) -> None:
    prices = load_prices(prices_file)
    record = InteractionRecord(model="llama3.2:3b", energy_j=36_000, prompt_eval_count=1_000_000, eval_count=500_000)
    costs = cost_columns(record, prices)
    assert costs["cost_energy_usd"] == pytest.approx(0.003)  # 0.01 kWh at 0.30
    assert costs["cost_api_usd"] == pytest.approx(0.10 + 0.20)  # "llama3.2" prices llama3.2:3b
    exact = cost_columns(InteractionRecord(model="llama3.2:1b", eval_count=1_000_000), prices)
    assert exact == {"cost_energy_usd": None, "cost_api_usd": pytest.approx(1.0)}
    assert cost_columns(InteractionRecord(model="qwen3"), prices) == {"cost_energy_usd": None, "cost_api_usd": None}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("kwh: cheap\n", "kwh must be a non-negative number"),
        ("kwh: 0.3\nmodel: {}\n", "unknown key 'model'"),
        ("models: {x: 3}\n", "models.x must be a mapping"),
        ("models: {x: {input: -1}}\n", "models.x.input must be a non-negative number"),
        ("kwh: [\n", "not valid YAML"),
        ("- 1\n", "expected a mapping"),
    ],
)
def test_bad_prices_name_the_file(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(text)
    with pytest.raises(PricesError, match=message) as caught:
        load_prices(path)
    assert str(path) in str(caught.value)


def test_config_file_prices_inline_or_as_a_path(tmp_path: Path, prices_file: Path) -> None:
    config = tmp_path / "config.yaml"
    assert prices_from_config(config) is None
    config.write_text("prices: prices.yaml\n")
    prices = prices_from_config(config)
    assert prices is not None and prices.kwh == 0.30
    config.write_text("prices: {kwh: 0.5}\n")
    prices = prices_from_config(config)
    assert prices is not None and prices.kwh == 0.5 and prices.models == {}


@pytest.fixture
def log_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "log"
    log = InteractionLog(directory)
    log.append(
        InteractionRecord(
            id="r1", source="proxy", started_at="2026-11-30T21:00:00.000000Z", method="POST", path="/api/generate",
            status=200, api="ollama", kind="generate", model="llama3.2:1b", complete=True, eval_count=100,
            prompt_eval_count=20, energy_j=3600.0, server_cpu_ms=12.5,
        )
    )  # fmt: skip
    return directory


def test_logs_with_prices_adds_both_columns(log_dir: Path, prices_file: Path) -> None:
    runner = CliRunner()
    table = runner.invoke(cli, ["logs", "--log-dir", str(log_dir), "--prices", str(prices_file)])
    assert table.exit_code == 0, table.output
    assert "cost_energy_usd" in table.output and "0.000300" in table.output  # 1 Wh at 0.30/kWh
    rows = list(
        csv.DictReader(
            io.StringIO(
                runner.invoke(cli, ["logs", "--log-dir", str(log_dir), "--prices", str(prices_file), "--csv"]).output
            )
        )
    )
    assert list(rows[0]) == [*COLUMNS, "cost_energy_usd", "cost_api_usd"]
    assert float(rows[0]["cost_api_usd"]) == pytest.approx(100 / 1e6)
    (line,) = runner.invoke(
        cli, ["logs", "--log-dir", str(log_dir), "--prices", str(prices_file), "--jsonl"]
    ).output.splitlines()
    assert json.loads(line)["energy_j"] == 3600.0
    summary = runner.invoke(
        cli, ["logs", "--log-dir", str(log_dir), "--prices", str(prices_file), "--summary", "--json"]
    )
    assert json.loads(summary.output)[0]["cost_energy_usd"] == pytest.approx(0.0003)
    plain = runner.invoke(cli, ["logs", "--log-dir", str(log_dir), "--csv"])
    assert "cost_energy_usd" not in plain.output  # nothing stored: only derived when asked


def test_logs_with_a_bad_prices_file_is_one_line(log_dir: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("kwh: -2\n")
    result = CliRunner().invoke(cli, ["logs", "--log-dir", str(log_dir), "--prices", str(bad)])
    assert result.exit_code == 1
    assert result.output.strip() == f"Error: {bad}: kwh must be a non-negative number, got -2"
