"""Config parsing: defaults, the shipped example, one-line errors with key and line."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from capture_scripts.cli import cli
from capture_scripts.config import CaptureConfig, ConfigError, example_config, parse_config, parse_size


def test_example_config_parses_to_the_defaults() -> None:
    parsed = parse_config(example_config(), "example")
    defaults = CaptureConfig()
    for key in ("interface", "ports", "duration", "interval", "method", "helper", "spool_dir", "analyze"):
        assert getattr(parsed, key) == getattr(defaults, key), key
    assert parsed.retention == defaults.retention
    assert parsed.output_dir == defaults.output_dir


def test_empty_config_is_defaults() -> None:
    config = parse_config("")
    assert config.ports == [11434] and config.duration == 30 and config.interval == 120


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("ports: [11434]\nintervall: 5\n", "cfg:2: unknown key 'intervall'"),
        ("duration: 30\nretention:\n  max_file: 3\n", "cfg:3: unknown key 'retention.max_file'"),
        ("duration: 9999\n", "cfg:1: duration: expected an integer from 1 to 600"),
        ("ports: [80, 0]\n", "cfg:1: ports: expected an integer from 1 to 65535"),
        ("\n\nmethod: root\n", "cfg:3: method: expected auto, sudo or direct"),
        ("interface: 'lo; rm -rf /'\n", "cfg:1: interface: expected an interface name"),
        ("retention:\n  max_bytes: lots\n", "cfg:2: retention.max_bytes: expected a positive size"),
        ("helper: relative/helper\n", "cfg:1: helper: expected an absolute path"),
        ("analyze: yes please\n", "cfg:1: analyze: expected true or false"),
        ("duration: 30\nduration: 40\n", "cfg:2: key 'duration' given twice"),
        ("ports: [1\n", "cfg:2: YAML syntax error"),
        ("- a\n- b\n", "cfg:1: config: expected a mapping"),
    ],
)
def test_bad_values_are_one_line_errors_with_key_and_line(text: str, expected: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(text, "cfg")
    assert str(err.value).startswith(expected), str(err.value)
    assert "\n" not in str(err.value)


def test_sizes_and_ages() -> None:
    config = parse_config("retention:\n  max_bytes: 1.5GiB\n  max_age: 12h\n  max_files: null\n")
    assert config.retention.max_bytes == int(1.5 * 1024**3)
    assert config.retention.max_age == 12 * 3600
    assert config.retention.max_files is None
    assert parse_size("500MB") == 500_000_000


def test_config_init_and_check(tmp_path: Path) -> None:
    path = tmp_path / "capture.yaml"
    runner = CliRunner()
    first = runner.invoke(cli, ["config", "init", "--path", str(path)])
    assert (first.exit_code, first.output) == (0, f"wrote {path}\n")
    assert path.read_text().count("#") > 10
    again = runner.invoke(cli, ["config", "init", "--path", str(path)])
    assert (again.exit_code, again.output) == (1, f"Error: {path} exists (use --force to overwrite)\n")
    checked = runner.invoke(cli, ["config", "check", "--config", str(path)])
    assert checked.exit_code == 0
    shown = dict(line.split(": ", 1) for line in checked.output.splitlines() if line)
    assert {k: shown[k] for k in ("interface", "ports", "duration", "interval", "method", "analyze", "source")} == {
        "interface": "lo",
        "ports": "[11434]",
        "duration": "30",
        "interval": "120",
        "method": "auto",
        "analyze": "False",
        "source": str(path),
    }
    path.write_text("ports: [11434]\nbogus: 1\n")
    bad = runner.invoke(cli, ["once", "--config", str(path)])
    assert bad.exit_code == 1
    known = "analyze, duration, helper, interface, interval, log_dir, method, output_dir, ports, resources, "
    known += "resources_interval, retention, spool_dir, state_dir"
    assert bad.output == f"Error: {path}:2: unknown key 'bogus' (known: {known})\n"


def test_every_command_has_help() -> None:
    runner = CliRunner()
    for args in (["setup"], ["once"], ["run"], ["status"], ["agent", "install"], ["agent", "uninstall"],
                 ["agent", "status"], ["config", "init"], ["config", "check"]):  # fmt: skip
        result = runner.invoke(cli, [*args, "--help"])
        assert result.exit_code == 0 and len(result.output.splitlines()) > 3, args


def test_resources_setting() -> None:
    assert parse_config("").resources == "auto" and parse_config("").resources_interval == 200
    assert parse_config("resources: process,nvidia\nresources_interval: 500\n").resources == "process,nvidia"
    assert parse_config("resources: off\n").resources == "off"  # YAML's boolean false
    with pytest.raises(ConfigError, match=r"<config>:2: resources: unknown resource source 'gpu'"):
        parse_config("duration: 5\nresources: gpu\n")
    with pytest.raises(ConfigError, match=r"resources_interval"):
        parse_config("resources_interval: 5\n")
