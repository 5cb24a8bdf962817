"""Write docs/cli.md from the commands' own --help (the help strings are the documentation).

.venv/bin/python docs/generate_cli.py          # rewrite docs/cli.md
.venv/bin/python docs/generate_cli.py --check  # exit 1 if docs/cli.md is out of date (the tests do this)
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import click
from click.testing import CliRunner

from analyzer.cli.analyze import analyze_pcap
from analyzer.cli.main import cli as ollama_wire
from capture_scripts.cli import cli as ollama_capture

CLI_DOC = Path(__file__).resolve().parent / "cli.md"
ROOTS: tuple[tuple[str, click.Command], ...] = (
    ("ollama-wire", ollama_wire),
    ("analyze-pcap", analyze_pcap),
    ("ollama-capture", ollama_capture),
)


def _walk(name: str, command: click.Command) -> Iterator[str]:
    """The full names of a command and all its subcommands, depth first."""
    yield name
    if isinstance(command, click.Group):
        context = click.Context(command, info_name=name)
        for sub in command.list_commands(context):
            found = command.get_command(context, sub)
            if found is not None and not (name == "ollama-wire" and sub == "analyze"):  # same as analyze-pcap
                yield from _walk(f"{name} {sub}", found)


def render() -> str:
    """The whole of docs/cli.md."""
    parts = ["# Command reference\n\nGenerated from each command's `--help` by `docs/generate_cli.py`; do not edit.\n"]
    for root, command in ROOTS:
        for name in _walk(root, command):
            words = name.split()
            result = CliRunner().invoke(command, [*words[1:], "--help"], prog_name=root, terminal_width=100)
            parts.append(f"\n## `{name}`\n\n```\n{result.output.rstrip()}\n```\n")
    return "".join(parts)


def main() -> int:
    text = render()
    if "--check" in sys.argv[1:]:
        if CLI_DOC.read_text(encoding="utf-8") != text:
            print(f"{CLI_DOC} is out of date: run python docs/generate_cli.py", file=sys.stderr)
            return 1
        return 0
    CLI_DOC.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
