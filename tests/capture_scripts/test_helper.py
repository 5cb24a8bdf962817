"""The privileged helper's validation, command line and installed form (no root needed)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from capture_scripts import helper, install

IFACES = {"lo", "eth0", "any"}


def test_valid_arguments_build_a_fixed_tcpdump_command() -> None:
    opts = helper.parse_capture_args(
        ["--interface", "lo", "--duration", "30", "--port", "11434", "--port", "8080", "--port", "11434"],
        IFACES,
        allowed_ports=(11434, 8080),
    )
    assert opts == {"interface": "lo", "duration": 30, "ports": [11434, 8080], "name": None}
    argv = helper.tcpdump_argv("/usr/bin/tcpdump", "lo", [11434, 8080], "tcpdump")
    assert argv == [
        "/usr/bin/tcpdump", "-i", "lo", "--immediate-mode", "-n", "-s", "0", "-U", "-w", "-",
        "-Z", "tcpdump", "--", "tcp port 11434 or tcp port 8080",
    ]  # fmt: skip


@pytest.mark.parametrize(
    "args",
    [
        [],
        ["--interface", "lo", "--duration", "30"],
        ["--interface", "lo", "--duration", "30", "--port", "11434", "-z", "x"],
        ["--interface", "wlan9", "--duration", "30", "--port", "11434"],
        ["--interface", "lo", "--duration", "601", "--port", "11434"],
        ["--interface", "lo", "--duration", "٣", "--port", "11434"],
        ["--interface", "lo", "--duration", "30", "--port", "11434", "--name", "a/b.pcap"],
        ["--interface", "lo", "--duration", "30", "--port", "11434", "--name", "x.pcapng"],
        ["--interface", "lo", "--interface", "eth0", "--duration", "30", "--port", "11434"],
        ["--interface", "lo", "--duration", "30", "--port"],
        ["--interface", "lo", "--duration", "30", "--port", "22"],  # not a port setup allowed
        ["--interface", "lo", "--duration", "30", "--port", "11434", "--port", "5432"],
    ],
)
def test_invalid_arguments_are_refused(args: list[str]) -> None:
    with pytest.raises(helper.Refused):
        helper.parse_capture_args(args, IFACES)


def test_main_refuses_unknown_commands(capsys: pytest.CaptureFixture[str]) -> None:
    assert helper.main(["shell"]) == helper.EXIT_REFUSED
    assert helper.main(["check", "extra"]) == helper.EXIT_REFUSED
    assert "refused" in capsys.readouterr().err


def test_machine_interfaces_include_loopback() -> None:
    assert ({"lo", "lo0"} & helper.machine_interfaces()) != set()


def test_rendered_helper_bakes_in_settings_and_isolated_shebang(tmp_path: Path) -> None:
    text = install.render_helper(Path("/var/spool/x"), 120, "/usr/bin/python3")
    assert text.startswith("#!/usr/bin/python3 -I\n")
    assert "SPOOL_DIR = '/var/spool/x'\nMAX_DURATION = 120\n" in text
    script = tmp_path / "helper"
    script.write_text(text)
    script.chmod(0o755)
    env = {"PYTHONPATH": str(tmp_path), "PYTHONSTARTUP": "/nonexistent", "PATH": "/usr/bin:/bin"}
    (tmp_path / "json.py").write_text("raise SystemExit('injected')\n")  # -I must ignore this
    done = subprocess.run([str(script), "capture", "--duration", "121"], capture_output=True, text=True, env=env)
    assert done.returncode == 2 and "injected" not in done.stderr


def test_helper_imports_only_the_standard_library() -> None:
    import ast
    import sys

    tree = ast.parse(install.helper_source())
    names = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    names |= {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    assert names <= set(sys.stdlib_module_names) | {"__future__"}


def test_sudoers_template_is_the_same_as_the_shipped_copy() -> None:
    shipped = Path(__file__).resolve().parents[2] / "sudoers" / "ollama-capture.sudoers"
    assert shipped.read_text() == install.template("ollama-capture.sudoers")


@pytest.mark.skipif(shutil.which("visudo") is None and not os.path.exists("/usr/sbin/visudo"), reason="no visudo")
def test_rendered_sudoers_passes_visudo(tmp_path: Path) -> None:
    text = install.render_sudoers("alice", Path("/usr/local/libexec/ollama-wire/h"), Path("/var/spool/o"), 600)
    assert "tcpdump" not in text.split("Cmnd_Alias")[1] and "timeout" not in text.split("Cmnd_Alias")[1]
    rule = tmp_path / "rule"
    rule.write_text(text)
    visudo = shutil.which("visudo") or "/usr/sbin/visudo"
    done = subprocess.run([visudo, "-c", "-f", str(rule)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr + done.stdout


@pytest.mark.parametrize("bad", ["al ice", "alice\nroot ALL=(ALL) ALL", "a,b", "%admin"])
def test_sudoers_refuses_unsafe_user_names(bad: str) -> None:
    with pytest.raises(install.SetupError):
        install.render_sudoers(bad, Path("/usr/local/libexec/h"), Path("/var/spool/o"), 600)


def test_sudoers_file_name_is_one_sudo_reads() -> None:
    assert install.sudoers_file_name("john.doe") == "ollama-capture-john_doe"


def test_setup_print_shows_every_file() -> None:
    from click.testing import CliRunner

    from capture_scripts.cli import cli

    result = CliRunner().invoke(cli, ["setup", "--user", "nobody", "--print"])
    assert result.exit_code == 0, result.output
    assert "file /usr/local/libexec/ollama-wire/ollama-capture-helper  mode 0755" in result.output
    assert "file /etc/sudoers.d/ollama-capture-nobody  mode 0440" in result.output
    assert "nobody ALL = (root) NOPASSWD: OLLAMA_CAPTURE_NOBODY" in result.output
    assert "directory /var/spool/ollama-wire/.partial  mode 0700" in result.output
