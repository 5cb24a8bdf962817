"""The umbrella ``ollama-wire`` command. Subcommands live in their own modules and load lazily."""

from __future__ import annotations

import importlib

import click

from analyzer.protocol.untrusted import for_terminal

# name -> (module, attribute); loaded only when used so `ollama-wire --help` stays fast.
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "emulate": ("analyzer.cli.emulate", "emulate"),
    "logs": ("analyzer.cli.logs", "logs"),
    "analyze": ("analyzer.cli.analyze", "analyze_pcap"),
    "demo": ("analyzer.cli.demo", "demo"),
    "proxy": ("analyzer.cli.proxy", "proxy"),
    "addon-path": ("analyzer.cli.proxy", "addon_path"),
    "report": ("analyzer.cli.report", "report"),
    "findings": ("analyzer.cli.report", "findings"),
    "top": ("analyzer.cli.top", "top"),
    "export": ("analyzer.cli.export", "export"),
    "resources": ("analyzer.cli.resources", "resources"),
    "replay": ("analyzer.cli.replay", "replay"),
    "compare": ("analyzer.cli.compare", "compare"),
}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(SUBCOMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in SUBCOMMANDS:
            return None
        module_name, attr = SUBCOMMANDS[cmd_name]
        command: click.Command = getattr(importlib.import_module(module_name), attr)
        return command

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except click.UsageError:  # about the command line the user typed
            raise
        except click.ClickException as exc:  # an Error: line can quote a file's or the traffic's text
            same_exit = type("EscapedError", (click.ClickException,), {"exit_code": exc.exit_code})
            raise same_exit(for_terminal(exc.format_message())) from exc


@click.group(cls=LazyGroup)
@click.version_option(package_name="ollama-wire")
def cli() -> None:
    """ollama-wire: see exactly what went over the wire to Ollama, and how fast."""
