"""docs/fleet: the rules pass promtool's check and unit tests; the dashboard is JSON on names the addon exports."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from analyzer.export import semconv as sc

FLEET = Path(__file__).resolve().parents[3] / "docs" / "fleet"
RULES = FLEET / "ollama-wire.rules.yml"
needs_promtool = pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool (prometheus) not installed")
SUFFIXES = ("_bucket", "_sum", "_count", "")


def exported_series() -> set[str]:
    names = set()
    for otel_name, prom in sc.PROMETHEUS_NAMES.items():
        names.update(prom + suffix for suffix in (SUFFIXES if otel_name in sc.HISTOGRAMS else ("",)))
    return names


def recorded_names() -> set[str]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return {rule["record"] for group in groups for rule in group["rules"] if "record" in rule}


def metric_names(expr: str) -> set[str]:
    """Every metric-looking identifier in a PromQL expression that belongs to this project."""
    without_labels = re.sub(r"\b(?:by|without)\s*\([^)]*\)|\{[^}]*\}", " ", expr)
    return set(re.findall(r"\b(ollama_wire(?::\w+)+|(?:gen_ai|ollama)_\w+)", without_labels))


@needs_promtool
def test_rules_pass_promtool_check() -> None:
    result = subprocess.run(["promtool", "check", "rules", str(RULES)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


@needs_promtool
def test_rules_unit_tests_pass() -> None:
    result = subprocess.run(
        ["promtool", "test", "rules", "ollama-wire.rules.test.yml"],
        cwd=FLEET,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_rules_use_only_exported_names() -> None:
    known = exported_series() | recorded_names()
    groups = yaml.safe_load(RULES.read_text())["groups"]
    for rule in (rule for group in groups for rule in group["rules"]):
        unknown = metric_names(rule["expr"]) - known
        assert not unknown, f"{rule.get('record') or rule.get('alert')}: {unknown}"


def test_dashboard_is_json_on_exported_names() -> None:
    dashboard = json.loads((FLEET / "grafana-dashboard.json").read_text())
    exprs = [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
    assert len(exprs) >= 8
    used: set[str] = set()
    for expr in exprs:
        used |= metric_names(expr)
    assert used and used <= exported_series() | recorded_names(), used - exported_series() - recorded_names()
    # the dashboard shows the signals the alerts are about
    assert {"ollama_wire:error_ratio:rate5m", "ollama_wire:ttft_seconds:p95_5m", "ollama_requests_in_flight"} <= used


def test_the_check_catches_a_misspelled_name() -> None:
    assert metric_names("rate(gen_ai_client_operation_duratoin_seconds_count[5m])") - exported_series()


def yaml_blocks() -> list[str]:
    text = (FLEET.parent / "fleet.md").read_text()
    return re.findall(r"```yaml\n(.*?)```", text, re.S)


def test_fleet_md_yaml_parses() -> None:
    blocks = yaml_blocks()
    assert len(blocks) == 2
    collector, scrape = (yaml.safe_load(block) for block in blocks)
    assert collector["receivers"]["otlp"]["protocols"]["http"]["endpoint"].endswith(":4318")
    assert set(collector["service"]["pipelines"]) == {"traces", "metrics"}
    assert scrape["rule_files"] == [RULES.name]


@needs_promtool
def test_fleet_md_scrape_config_passes_promtool(tmp_path: Path) -> None:
    config = tmp_path / "prometheus.yml"
    config.write_text(yaml_blocks()[1])
    shutil.copy(RULES, tmp_path / RULES.name)
    result = subprocess.run(["promtool", "check", "config", str(config)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
