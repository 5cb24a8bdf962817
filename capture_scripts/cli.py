"""``ollama-capture``: scheduled packet snapshots of Ollama traffic without a proxy in the path."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from analyzer.protocol.untrusted import for_terminal
from capture_scripts import agent as agent_mod
from capture_scripts import install
from capture_scripts.config import (
    DEFAULT_HELPER,
    DEFAULT_PORTS,
    DEFAULT_SPOOL,
    HELPER_MAX_DURATION,
    CaptureConfig,
    ConfigError,
    default_config_path,
    example_config,
    load_config,
    parse_size,
)
from capture_scripts.runner import LockHeld, read_state, run_loop, setup_logging, take_once
from capture_scripts.snapshot import CaptureError, SudoRuleMissing, capture_method

EXIT_SUDO_RULE = 3
EXIT_CAPTURE = 4
EXIT_LOCKED = 5

_Command = TypeVar("_Command", bound=Callable[..., Any])


class Failure(click.ClickException):
    """A one-line error; exit status 1 (the subclasses below have their own)."""


class SudoRuleFailure(Failure):
    """The sudo rule for the helper is missing."""

    exit_code = EXIT_SUDO_RULE


class CaptureFailure(Failure):
    """The capture itself failed."""

    exit_code = EXIT_CAPTURE


class LockedFailure(Failure):
    """Another run holds the lock."""

    exit_code = EXIT_LOCKED


def _config(path: Path | None) -> CaptureConfig:
    try:
        return load_config(path)
    except ConfigError as exc:
        raise Failure(str(exc)) from None


config_option = click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="YAML config file [default: $XDG_CONFIG_HOME/ollama-wire/capture.yaml (~/.config/…) if it exists].",
)


class _Size(click.ParamType):
    name = "SIZE"

    def convert(self, value: object, param: click.Parameter | None, ctx: click.Context | None) -> int:
        try:
            return parse_size(value)
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


@click.group()
@click.version_option(package_name="ollama-wire")
def cli() -> None:
    """Scheduled packet snapshots of Ollama traffic through a fixed-interface privileged helper."""


@cli.command()
@click.option("--user", "user_name", required=True, help="Account allowed to take snapshots.")
@click.option("--print", "print_only", is_flag=True, help="Show every file and directory; change nothing.")
@click.option("--uninstall", is_flag=True, help="Remove the user's sudoers drop-in (and the helper if unused).")
@click.option("--remove-spool", is_flag=True, help="With --uninstall: also delete the spool and its snapshots.")
@click.option("--helper", type=click.Path(path_type=Path), default=DEFAULT_HELPER, show_default=True,
              help="Where to install the root-owned helper.")  # fmt: skip
@click.option("--spool", type=click.Path(path_type=Path), default=DEFAULT_SPOOL, show_default=True,
              help="Spool directory (baked into the helper).")  # fmt: skip
@click.option("--sudoers-dir", type=click.Path(path_type=Path), default=str(install.SUDOERS_DIR),
              show_default=True, help="Directory of sudoers drop-ins.")  # fmt: skip
@click.option("--max-duration", type=click.IntRange(1, HELPER_MAX_DURATION), default=HELPER_MAX_DURATION,
              show_default=True, help="Longest snapshot the helper accepts, in seconds.")  # fmt: skip
@click.option("--port", "ports", type=click.IntRange(1, 65535), multiple=True,
              help=f"A port the helper may capture (default {DEFAULT_PORTS[0]}); "
                   "repeatable; machine-wide.")  # fmt: skip
@click.option("--allow-ephemeral-port", is_flag=True,
              help="Allow a --port in the ephemeral port range (other connections may use it).")  # fmt: skip
@click.option("--max-outbox-files", type=click.IntRange(min=1), default=install.DEFAULT_MAX_OUTBOX_FILES,
              show_default=True, help="Refuse captures while the spool outbox holds this many files.")  # fmt: skip
@click.option("--max-outbox-bytes", type=_Size(), default="2GiB", show_default=True,
              help="Refuse captures while the spool outbox holds this much (2GiB, 500MB, bytes).")  # fmt: skip
def setup(
    user_name: str,
    print_only: bool,
    uninstall: bool,
    remove_spool: bool,
    helper: Path,
    spool: Path,
    sudoers_dir: Path,
    max_duration: int,
    ports: tuple[int, ...],
    allow_ephemeral_port: bool,
    max_outbox_files: int,
    max_outbox_bytes: int,
) -> None:
    """Install the capture helper, the sudoers rule for USER and the spool (run once, as root)."""
    try:
        plan = install.plan_setup(
            user_name, helper, spool, sudoers_dir, max_duration, ports or DEFAULT_PORTS,
            max_outbox_files=max_outbox_files, max_outbox_bytes=max_outbox_bytes,
        )  # fmt: skip
        if plan.ephemeral_ports and not uninstall:
            if not allow_ephemeral_port:
                raise Failure(
                    f"refusing: {install.ephemeral_port_message(plan.ephemeral_ports)}. Choose a port outside the "
                    "range, reserve it (sysctl net.ipv4.ip_local_reserved_ports=N) or pass --allow-ephemeral-port"
                )
            for warning in plan.warnings:
                click.echo(f"warning: {warning}", err=True)
        if print_only:
            click.echo(plan.describe(), nl=False)
            return
        lines = install.uninstall(plan, remove_spool) if uninstall else install.apply_setup(plan)
    except install.SetupError as exc:
        raise Failure(str(exc)) from None
    for line in lines:
        click.echo(line)
    if not uninstall and (helper != Path(DEFAULT_HELPER) or spool != Path(DEFAULT_SPOOL)):
        click.echo(f"note: put 'helper: {helper}' and 'spool_dir: {spool}' in {user_name}'s capture.yaml")


def _snapshot_json(snap: object) -> str:
    return json.dumps(snap.as_dict() if hasattr(snap, "as_dict") else snap, sort_keys=True)


@cli.command()
@click.option("--duration", type=click.IntRange(1, HELPER_MAX_DURATION), help="Seconds [config: 30].")
@click.option("--port", "ports", type=click.IntRange(1, 65535), multiple=True, help="TCP port (repeatable).")
@click.option("--interface", help="Interface [config: lo on Linux, lo0 on macOS].")
@click.option("--output-dir", type=click.Path(file_okay=False, path_type=Path), help="Where the snapshot goes.")
@click.option("--json", "as_json", is_flag=True, help="Print the snapshot as JSON.")
@config_option
def once(
    duration: int | None,
    ports: tuple[int, ...],
    interface: str | None,
    output_dir: Path | None,
    as_json: bool,
    config_path: Path | None,
) -> None:
    """Take one snapshot now (via sudo -n HELPER, or directly where you may capture)."""
    config = _config(config_path)
    if ports:
        config.ports = list(ports)
    if interface:
        config.interface = interface
    if output_dir:
        config.output_dir = output_dir.expanduser()
    setup_logging(config, echo=False)
    try:
        snap = take_once(config, duration)
    except SudoRuleMissing as exc:
        raise SudoRuleFailure(str(exc)) from None
    except CaptureError as exc:
        raise CaptureFailure(str(exc)) from None
    if as_json:
        click.echo(_snapshot_json(snap))
    else:
        click.echo(f"{snap.path}  {snap.packets} packets  {snap.bytes} bytes  {snap.seconds:.1f} s  ({snap.method})")


@cli.command()
@config_option
@click.option("--max-snapshots", type=click.IntRange(min=1), help="Stop after this many snapshots.")
@click.option("--quiet", is_flag=True, help="Log only to the log file, not to stderr.")
def run(config_path: Path | None, max_snapshots: int | None, quiet: bool) -> None:
    """Snapshot every `interval` seconds in the foreground until SIGTERM/SIGINT."""
    config = _config(config_path)
    setup_logging(config, echo=not quiet)
    try:
        result = run_loop(config, max_snapshots)
    except LockHeld as exc:
        raise LockedFailure(str(exc)) from None
    if result.failures and not result.snapshots:
        raise CaptureFailure(f"all {result.failures} snapshot(s) failed; see {config.log_file}")


def _ago(ts: object) -> str:
    if not isinstance(ts, int | float):
        return "never"
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))
    return f"{stamp} ({time.time() - ts:.0f} s ago)"


@cli.command()
@config_option
@click.option("--json", "as_json", is_flag=True, help="Print the raw state file.")
def status(config_path: Path | None, as_json: bool) -> None:
    """Show the last snapshot, counts and last error from the state file."""
    config = _config(config_path)
    state = read_state(config)
    if as_json:
        click.echo(json.dumps(state, indent=2, sort_keys=True))
        return
    try:
        method, tool = capture_method(config)
        how = f"{method} ({tool or config.helper})"
    except CaptureError as exc:
        how = f"unavailable: {exc}"
    last = state.get("last_snapshot") or {}
    lines = [
        f"state file:     {config.state_file}",
        f"log file:       {config.log_file}",
        f"output dir:     {config.output_dir}",
        f"capture method: {how}",
        f"runner:         {'running, pid ' + str(state['runner_pid']) if state.get('runner_pid') else 'not running'}",
        f"snapshots:      {state.get('snapshots', 0)} ({state.get('packets', 0)} packets), "
        f"failures: {state.get('failures', 0)}, removed by retention: {state.get('removed', 0)}",
        f"last snapshot:  {last.get('path', 'none')} at {_ago(last.get('started'))}, {last.get('packets', 0)} packets",
        f"last error:     {state.get('last_error') or 'none'}"
        + (f" at {_ago(state.get('last_error_at'))}" if state.get("last_error") else ""),
    ]
    if config.analyze:
        lines.append(f"analyzed:       {state.get('analyzed_records', 0)} records into {config.log_dir}")
    # the last error can quote a capture's contents (the analyzer's message): one escaped line each
    click.echo("\n".join(for_terminal(line) for line in lines))


@cli.group()
def agent() -> None:
    """Run `ollama-capture run` at login: launchd LaunchAgent (macOS) or systemd user service (Linux)."""


def _kind(launchd: bool, systemd: bool) -> str:
    if launchd and systemd:
        raise click.UsageError("give at most one of --launchd and --systemd")
    return "launchd" if launchd else "systemd" if systemd else agent_mod.default_kind()


agent_kind_options = [
    click.option("--launchd", is_flag=True, help="macOS LaunchAgent (default on macOS)."),
    click.option("--systemd", is_flag=True, help="systemd user service (default elsewhere)."),
]


def _with_kind(fn: _Command) -> _Command:
    for option in reversed(agent_kind_options):
        fn = option(fn)
    return fn


@agent.command("install")
@_with_kind
@click.option("--print", "print_only", is_flag=True, help="Write the file(s) to stdout instead of installing.")
@config_option
def agent_install(launchd: bool, systemd: bool, print_only: bool, config_path: Path | None) -> None:
    """Install and start the agent."""
    kind = _kind(launchd, systemd)
    config = _config(config_path)
    try:
        if print_only:
            if kind == "launchd":
                click.echo(f"would write {agent_mod.launchd_plist_path()}", err=True)
                click.echo(agent_mod.render_launchd(config).decode("utf-8"), nl=False)
            else:
                for name, text in agent_mod.render_systemd(config).items():
                    click.echo(f"would write {agent_mod.systemd_unit_dir() / name}", err=True)
                    click.echo(text, nl=False)
            return
        for line in agent_mod.install(kind, config):
            click.echo(line)
    except agent_mod.AgentError as exc:
        raise Failure(str(exc)) from None


@agent.command("uninstall")
@_with_kind
def agent_uninstall(launchd: bool, systemd: bool) -> None:
    """Stop and remove the agent."""
    for line in agent_mod.uninstall(_kind(launchd, systemd)):
        click.echo(line)


@agent.command("status")
@_with_kind
def agent_status(launchd: bool, systemd: bool) -> None:
    """Show the service manager's view of the agent."""
    click.echo(agent_mod.status(_kind(launchd, systemd)))


@cli.group("config")
def config_group() -> None:
    """Create or check the YAML configuration."""


@config_group.command("init")
@click.option("--path", type=click.Path(dir_okay=False, path_type=Path), help="Where to write it.")
@click.option("--force", is_flag=True, help="Overwrite an existing file.")
def config_init(path: Path | None, force: bool) -> None:
    """Write a commented example config (every key, with its default)."""
    path = path or default_config_path()
    if path.exists() and not force:
        raise Failure(f"{path} exists (use --force to overwrite)")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(example_config(), encoding="utf-8")
    click.echo(f"wrote {path}")


@config_group.command("check")
@config_option
def config_check(config_path: Path | None) -> None:
    """Validate the config and print the effective values."""
    config = _config(config_path)
    for key in ("interface", "ports", "duration", "interval", "output_dir", "state_dir", "method", "helper",
                "spool_dir", "retention", "analyze", "log_dir", "source"):  # fmt: skip
        click.echo(f"{key}: {getattr(config, key)}")


def main() -> None:
    """Console entry point."""
    cli(prog_name="ollama-capture")


if __name__ == "__main__":
    main()
