"""Facts with one home: a second copy (a literal, a redefinition) fails here with the file and line."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from analyzer.protocol.endpoints import DEFAULT_OLLAMA_URL, OLLAMA_PORT, ollama_url
from capture_scripts import config, helper

ROOT = Path(__file__).resolve().parents[1]
PORT_HOMES = {"analyzer/protocol/endpoints.py", "capture_scripts/helper.py"}  # the helper: stdlib only, checked below


def port_literals(path: Path, root: Path = ROOT) -> list[str]:
    """``file:line`` of every integer 11434 in code (docstrings and help texts may say it)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    name = path.relative_to(root).as_posix()
    return [
        f"{name}:{node.lineno}"
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and type(node.value) is int and node.value == OLLAMA_PORT
    ]


def shipped(root: Path = ROOT) -> list[Path]:
    return [p for folder in ("analyzer", "addons", "capture_scripts") for p in sorted((root / folder).rglob("*.py"))]


def test_the_default_port_is_written_once() -> None:
    found = [hit for path in shipped() for hit in port_literals(path) if hit.split(":")[0] not in PORT_HOMES]
    assert not found, f"use analyzer.protocol.endpoints.OLLAMA_PORT instead of the literal: {found}"


def test_the_check_finds_a_literal_port(tmp_path: Path) -> None:
    bad = tmp_path / "analyzer" / "report" / "x.py"
    bad.parent.mkdir(parents=True)
    bad.write_text('"""Port 11434."""\nPORTS = (11434,)\nhelp = "default 11434"\n')
    assert port_literals(bad, tmp_path) == ["analyzer/report/x.py:2"]


def test_the_root_helper_defaults_say_what_the_installer_says() -> None:
    """The helper keeps its own constants (it imports nothing of ours); they must say the same port and spool."""
    assert helper.ALLOWED_PORTS == (OLLAMA_PORT,) == config.DEFAULT_PORTS
    assert helper.SPOOL_DIR == config.DEFAULT_SPOOL
    assert helper.MAX_DURATION == config.HELPER_MAX_DURATION


@pytest.mark.parametrize(
    ("address", "url"),
    [
        ("", DEFAULT_OLLAMA_URL),
        ("  ", DEFAULT_OLLAMA_URL),
        ("gpu-box", f"http://gpu-box:{OLLAMA_PORT}"),
        ("gpu-box/", f"http://gpu-box:{OLLAMA_PORT}"),
        ("0.0.0.0:8080", "http://0.0.0.0:8080"),
        ("[::1]", f"http://[::1]:{OLLAMA_PORT}"),
        ("[::1]:9000", "http://[::1]:9000"),
        ("https://ollama.example/", "https://ollama.example"),
        ("http://127.0.0.1", "http://127.0.0.1"),
    ],
)
def test_ollama_host_reads_as_the_clients_read_it(address: str, url: str) -> None:
    assert ollama_url(address) == url
