"""``report``/``findings`` with ``--prices`` (or the config file's prices): what the period cost in electricity and
on a hosted API, in total and per model, derived when read; the resource numbers; one-line errors for bad prices."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from report_records import rec

from analyzer.cli.main import cli
from analyzer.store.log import InteractionLog

PRICES = """\
kwh: 0.25
models:
  llama3.2: {input: 0.10, output: 0.40}
  qwen2.5: {input: 1.0, output: 2.0}
"""


@pytest.fixture(autouse=True)
def no_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No config file unless a test writes one (the user's own must not leak in)."""
    monkeypatch.setenv("OLLAMA_WIRE_CONFIG", str(tmp_path / "no-config.yaml"))


@pytest.fixture
def log_dir(tmp_path: Path) -> Path:
    """Three requests: llama3.2 with 7,200 J, qwen2.5 unsampled with a million tokens, mistral (no price) 3,600 J."""
    directory = tmp_path / "log"
    InteractionLog(directory).append_many(
        [
            rec("a", 0, prompt_eval_count=1000, eval_count=2000, energy_j=7200.0, power_mean_w=150.0,
                gpu_util_mean_pct=80.0, total_ms=1000.0, server_rss_max_mb=4000.0, server_cpu_ms=300.0),
            rec("b", 10, model="qwen2.5", prompt_eval_count=500_000, eval_count=250_000),
            rec("c", 20, model="mistral", energy_j=3600.0, power_mean_w=50.0, gpu_util_mean_pct=20.0,
                total_ms=3000.0, server_rss_max_mb=5000.0, server_cpu_ms=900.0),
        ]
    )  # fmt: skip
    return directory


@pytest.fixture
def prices(tmp_path: Path) -> Path:
    path = tmp_path / "prices.yaml"
    path.write_text(PRICES, encoding="utf-8")
    return path


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_prices_give_exact_costs_in_total_and_per_model(log_dir: Path, prices: Path) -> None:
    code, out, err = run("report", str(log_dir), "--json", "--prices", str(prices))
    assert code == 0, err
    head = json.loads(out)["headline"]
    # electricity: (7,200 J + 3,600 J) = 0.003 kWh at $0.25; b has no energy
    assert head["cost_energy_usd"] == pytest.approx(0.00075, abs=1e-12) and head["cost_energy_requests"] == 2
    # hosted API: a 1,000 in × $0.10 + 2,000 out × $0.40 per million = $0.0009; b 500k × $1 + 250k × $2 = $1.00
    assert head["cost_api_usd"] == pytest.approx(1.0009, abs=1e-12) and head["cost_api_requests"] == 2
    assert head["prices"] == {
        "kwh": 0.25,
        "models": {"llama3.2": {"input": 0.1, "output": 0.4}, "qwen2.5": {"input": 1.0, "output": 2.0}},
    }
    per_model = {row["model"]: row for row in head["per_model"]}
    assert per_model["llama3.2"]["cost_energy_usd"] == pytest.approx(0.0005, abs=1e-12)
    assert per_model["llama3.2"]["cost_api_usd"] == pytest.approx(0.0009, abs=1e-12)
    assert per_model["qwen2.5"]["cost_energy_usd"] is None and per_model["qwen2.5"]["cost_api_usd"] == 1.0
    assert per_model["mistral"]["cost_energy_usd"] == pytest.approx(0.00025, abs=1e-12)
    assert per_model["mistral"]["cost_api_usd"] is None  # the prices do not name it


def test_resource_numbers_without_prices_and_no_cost(log_dir: Path) -> None:
    code, out, _ = run("report", str(log_dir), "--json")
    assert code == 0
    head = json.loads(out)["headline"]
    assert not any(key.startswith("cost_") for key in head) and "prices" not in head
    assert head["sampled_requests"] == 2 and head["energy_j"] == 10800.0
    assert head["joules_per_token"] == round(10800 / (2000 + 50), 4)  # output tokens of the requests with energy
    assert head["power_mean_w"] == round((150 * 1000 + 50 * 3000) / 4000, 1)  # weighted by duration
    assert head["gpu_util_mean_pct"] == 35.0 and head["server_rss_max_mb"] == 5000.0 and head["server_cpu_ms"] == 1200
    per_model = {row["model"]: row for row in head["per_model"]}
    assert per_model["llama3.2"]["joules_per_token"] == 3.6 and per_model["qwen2.5"]["sampled_requests"] == 0
    assert not any(key.startswith("cost_") for row in head["per_model"] for key in row)


def test_unsampled_records_have_no_resource_numbers(tmp_path: Path) -> None:
    InteractionLog(tmp_path / "log").append_many([rec("x", 0)])
    head = json.loads(run("report", str(tmp_path / "log"), "--json")[1])["headline"]
    assert "sampled_requests" not in head and "energy_j" not in head["per_model"][0]


def test_the_config_file_prices_are_used(log_dir: Path, prices: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = prices.parent / "config.yaml"
    config.write_text("prices: prices.yaml\n", encoding="utf-8")  # relative to the config file
    monkeypatch.setenv("OLLAMA_WIRE_CONFIG", str(config))
    head = json.loads(run("findings", str(log_dir), "--json")[1])["headline"]
    assert head["cost_api_usd"] == pytest.approx(1.0009, abs=1e-12)


def test_findings_and_page_show_the_cost(log_dir: Path, prices: Path, tmp_path: Path) -> None:
    code, out, _ = run("findings", str(log_dir), "--prices", str(prices))
    assert code == 0
    lines = out.splitlines()
    assert lines[1] == "resources: 2 of 3 requests sampled, energy 3.00 Wh, 5.27 J/token, mean power 75 W"
    assert lines[2] == (
        "cost: electricity $0.00075 (2 of 3 requests with energy); on a hosted API $1.00 (2 of 3 requests priced)"
    )
    page = tmp_path / "page.html"
    code, _, err = run("report", str(log_dir), "--prices", str(prices), "-o", str(page))
    assert code == 0 and err.splitlines()[-1] == lines[2]
    html = page.read_text(encoding="utf-8")
    assert "<b>$1.00</b><span>on a hosted API (2 requests priced)</span>" in html
    assert "Resources and cost per model" in html and "--prices FILE" not in html
    plain = tmp_path / "plain.html"
    assert run("report", str(log_dir), "-o", str(plain))[0] == 0
    text = plain.read_text(encoding="utf-8")
    assert "hosted API" not in text.replace("on a hosted API.", "") and "run with --prices FILE" in text


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("kwh: -1\n", "kwh must be a non-negative number, got -1"),
        ("kwh: [0.3\n", "not valid YAML"),
        ("models:\n  llama3.2: 0.1\n", "models.llama3.2 must be a mapping with input and/or output"),
        ("dollars: 3\n", "unknown key 'dollars'"),
    ],
)
@pytest.mark.parametrize("command", ["report", "findings"])
def test_a_bad_prices_file_is_one_line_naming_it(
    log_dir: Path, tmp_path: Path, content: str, message: str, command: str
) -> None:
    bad = tmp_path / "bad-prices.yaml"
    bad.write_text(content, encoding="utf-8")
    code, out, err = run(command, str(log_dir), "--prices", str(bad))
    assert code == 1 and out == ""
    assert err.strip().splitlines() == [err.strip()] and err.startswith(f"Error: {bad}: ") and message in err
    assert "Traceback" not in err


def test_a_missing_prices_file_is_one_line(log_dir: Path, tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    code, _, err = run("report", str(log_dir), "--json", "--prices", str(missing))
    assert code == 1 and err.strip() == f"Error: {missing}: cannot read prices: No such file or directory"


def test_energy_is_labelled_by_source_and_unknown_tokens_do_not_bend_j_per_token(tmp_path: Path) -> None:
    directory = tmp_path / "log"
    InteractionLog(directory).append_many(
        [
            rec("a", 0, eval_count=100, energy_j=300.0, energy_source="nvml_counter", gpu_mem_max_mb=5000.0,
                gpu_mem_source="nvml", total_ms=1000.0),
            # energy known, output tokens unknown (an embed, a stream without usage): counted in energy only
            rec("b", 10, kind="embed", path="/api/embed", eval_count=None, energy_j=90.0,
                energy_source="nvml_counter", total_ms=500.0),
            # no energy known: never a zero that pulls J/token down
            rec("c", 20, eval_count=100, energy_j=None, server_cpu_ms=None, total_ms=800.0, server_rss_max_mb=10.0),
        ]
    )  # fmt: skip
    code, out, _ = run("report", str(directory), "--json")
    assert code == 0
    head = json.loads(out)["headline"]
    assert head["energy_j"] == 390.0 and head["joules_per_token"] == 3.0
    assert head["energy_sources"] == ["nvml_counter"] and head["gpu_mem_sources"] == ["nvml"]
    assert head["server_cpu_ms"] is None
    page = tmp_path / "page.html"
    assert run("report", str(directory), "-o", str(page))[0] == 0
    html = page.read_text(encoding="utf-8")
    assert "sampled requests; NVML energy counter)" in html and "GPU memory from: NVML." in html
