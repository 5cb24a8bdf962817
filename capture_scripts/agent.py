"""``ollama-capture agent``: run the capture loop at login as a launchd LaunchAgent or a systemd user service.

Both agents run ``ollama-capture run`` (one long-lived process) rather than firing ``once`` on a schedule:
the runner's loop keeps the cadence exact, holds the lock, applies retention and finishes the current
snapshot on SIGTERM; launchd's ``StartInterval`` would silently skip firings while the Mac sleeps or the job
still runs, and a systemd timer needs ``AccuracySec`` tuning to keep a 2-minute rhythm.
"""

from __future__ import annotations

import os
import plistlib
import pwd
import shutil
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from capture_scripts.config import CaptureConfig
from capture_scripts.install import template

LAUNCHD_LABEL = "dev.ollama-wire.capture"
SYSTEMD_UNIT = "ollama-capture.service"
AGENT_PATH = "/usr/bin:/bin:/usr/sbin:/sbin"

Runner = Callable[[Sequence[str]], subprocess.CompletedProcess[str]]


class AgentError(Exception):
    """Installing or removing the agent failed."""


def default_kind() -> str:
    """``launchd`` on macOS, ``systemd`` elsewhere."""
    return "launchd" if sys.platform == "darwin" else "systemd"


def runner_executable() -> Path:
    """Absolute path of the ``ollama-capture`` program (next to this Python, else on $PATH)."""
    beside = Path(sys.executable).parent / "ollama-capture"
    if beside.exists():
        return beside.absolute()
    found = shutil.which("ollama-capture")
    if not found:
        raise AgentError("cannot find the ollama-capture program; install the package first")
    return Path(found).absolute()


def run_arguments(config: CaptureConfig, executable: Path | None = None) -> list[str]:
    """Absolute command line the agent runs."""
    argv = [str(executable or runner_executable()), "run"]
    if config.source is not None:
        argv += ["--config", str(config.source.absolute())]
    return argv


def launchd_plist_path() -> Path:
    """``~/Library/LaunchAgents/<label>.plist``."""
    return Path.home() / "Library" / "LaunchAgents" / f"{LAUNCHD_LABEL}.plist"


def render_launchd(config: CaptureConfig, executable: Path | None = None) -> bytes:
    """The LaunchAgent plist: RunAtLoad + KeepAlive running ``ollama-capture run``."""
    state_dir = config.state_dir.expanduser().absolute()
    plist = {
        "Label": LAUNCHD_LABEL,
        "ProgramArguments": run_arguments(config, executable),
        "RunAtLoad": True,
        # Restart after a crash or a failed start, but not after a clean stop (bootout sends SIGTERM).
        "KeepAlive": {"SuccessfulExit": False},
        "ThrottleInterval": 60,
        # Time to finish the current snapshot after SIGTERM before launchd sends SIGKILL.
        "ExitTimeOut": 60,
        "StandardOutPath": str(state_dir / "agent.out.log"),
        "StandardErrorPath": str(state_dir / "agent.err.log"),
        "EnvironmentVariables": {"PATH": AGENT_PATH},
        "WorkingDirectory": str(Path.home()),
    }
    return plistlib.dumps(plist, fmt=plistlib.FMT_XML, sort_keys=False)


def systemd_unit_dir() -> Path:
    """``$XDG_CONFIG_HOME/systemd/user``."""
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "systemd" / "user"


def _systemd_quote(arg: str) -> str:
    if arg and all(c.isalnum() or c in "/._-+:=@," for c in arg):
        return arg
    escaped = arg.replace("\\", "\\\\").replace('"', '\\"').replace("$", "$$").replace("%", "%%")
    return f'"{escaped}"'


def render_systemd(config: CaptureConfig, executable: Path | None = None) -> dict[str, str]:
    """The user service file(s), as ``{file name: content}``."""
    text = template("ollama-capture.service")
    replacements = {
        "@EXEC@": " ".join(_systemd_quote(a) for a in run_arguments(config, executable)),
        "@DURATION@": str(config.duration),
        "@INTERVAL@": str(config.interval),
        "@USER@": pwd.getpwuid(os.getuid()).pw_name,
    }
    for key, value in replacements.items():
        text = text.replace(key, value)
    return {SYSTEMD_UNIT: text}


def _run(argv: Sequence[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(argv), capture_output=True, text=True, check=False)


def _checked(run: Runner, argv: Sequence[str]) -> str:
    result = run(argv)
    if result.returncode != 0:
        raise AgentError(f"{' '.join(argv)} failed: {(result.stderr or result.stdout).strip()}")
    return result.stdout


def install(kind: str, config: CaptureConfig, run: Runner = _run) -> list[str]:
    """Write and load the agent; return what was done."""
    config.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    if kind == "launchd":
        path = launchd_plist_path()
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(render_launchd(config))
        domain = f"gui/{os.getuid()}"
        run(["launchctl", "bootout", f"{domain}/{LAUNCHD_LABEL}"])  # not loaded yet is fine
        _checked(run, ["launchctl", "bootstrap", domain, str(path)])
        return [f"wrote {path}", f"loaded with launchctl bootstrap {domain}"]
    unit_dir = systemd_unit_dir()
    unit_dir.mkdir(parents=True, exist_ok=True)
    done = []
    for name, text in render_systemd(config).items():
        (unit_dir / name).write_text(text, encoding="utf-8")
        done.append(f"wrote {unit_dir / name}")
    _checked(run, ["systemctl", "--user", "daemon-reload"])
    _checked(run, ["systemctl", "--user", "enable", "--now", SYSTEMD_UNIT])
    done.append(f"enabled and started {SYSTEMD_UNIT}")
    linger = run(["loginctl", "show-user", pwd.getpwuid(os.getuid()).pw_name, "--property=Linger"])
    if "Linger=yes" not in linger.stdout:
        done.append(
            "note: it runs only while you are logged in; for 3 a.m. captures run: "
            f"sudo loginctl enable-linger {pwd.getpwuid(os.getuid()).pw_name}"
        )
    return done


def uninstall(kind: str, run: Runner = _run) -> list[str]:
    """Stop and remove the agent; return what was done."""
    if kind == "launchd":
        path = launchd_plist_path()
        run(["launchctl", "bootout", f"gui/{os.getuid()}/{LAUNCHD_LABEL}"])
        path.unlink(missing_ok=True)
        return [f"unloaded {LAUNCHD_LABEL}", f"removed {path}"]
    run(["systemctl", "--user", "disable", "--now", SYSTEMD_UNIT])
    (systemd_unit_dir() / SYSTEMD_UNIT).unlink(missing_ok=True)
    run(["systemctl", "--user", "daemon-reload"])
    return [f"stopped and disabled {SYSTEMD_UNIT}", f"removed {systemd_unit_dir() / SYSTEMD_UNIT}"]


def status(kind: str, run: Runner = _run) -> str:
    """The service manager's view of the agent."""
    if kind == "launchd":
        result = run(["launchctl", "print", f"gui/{os.getuid()}/{LAUNCHD_LABEL}"])
    else:
        result = run(["systemctl", "--user", "status", "--no-pager", SYSTEMD_UNIT])
    return (result.stdout or result.stderr).strip() or f"(no output, exit {result.returncode})"
