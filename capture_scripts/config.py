"""Configuration of the capture runner: one YAML file, every key checked, errors name the key and line."""

from __future__ import annotations

import dataclasses
import os
import re
import sys
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from analyzer.protocol.endpoints import OLLAMA_PORT
from analyzer.resources.powermetrics import DEFAULT_HELPER  # where setup installs it; powermetrics calls it there

DEFAULT_SPOOL = "/var/spool/ollama-wire"
HELPER_MAX_DURATION = 600
DEFAULT_PORTS: tuple[int, ...] = (OLLAMA_PORT,)  # Ollama's port: the only one the helper allows by default


class ConfigError(Exception):
    """A configuration value is unknown or invalid; the message is one line naming the key and line."""


def default_interface() -> str:
    """The loopback interface's name on this OS."""
    return "lo0" if sys.platform == "darwin" else "lo"


def _xdg(var: str, fallback: str) -> Path:
    value = os.environ.get(var)
    return Path(value) if value and os.path.isabs(value) else Path.home() / fallback


def default_config_path() -> Path:
    """``$XDG_CONFIG_HOME/ollama-wire/capture.yaml`` (``~/.config/...`` when unset)."""
    return _xdg("XDG_CONFIG_HOME", ".config") / "ollama-wire" / "capture.yaml"


@dataclasses.dataclass
class Retention:
    """Limits applied to the output directory after each snapshot; ``None`` disables a limit."""

    max_files: int | None = 720
    max_bytes: int | None = 2 * 1024**3
    max_age: float | None = 7 * 86400.0


@dataclasses.dataclass
class CaptureConfig:
    """Everything the runner needs; defaults match ``ollama-capture config init``."""

    interface: str = dataclasses.field(default_factory=default_interface)
    ports: list[int] = dataclasses.field(default_factory=lambda: list(DEFAULT_PORTS))
    duration: int = 30
    interval: int = 120
    output_dir: Path = dataclasses.field(
        default_factory=lambda: _xdg("XDG_DATA_HOME", ".local/share") / "ollama-wire" / "captures"
    )
    state_dir: Path = dataclasses.field(default_factory=lambda: _xdg("XDG_STATE_HOME", ".local/state") / "ollama-wire")
    method: str = "auto"
    helper: Path = Path(DEFAULT_HELPER)
    spool_dir: Path = Path(DEFAULT_SPOOL)
    retention: Retention = dataclasses.field(default_factory=Retention)
    analyze: bool = False
    log_dir: Path = dataclasses.field(
        default_factory=lambda: _xdg("XDG_DATA_HOME", ".local/share") / "ollama-wire" / "logs"
    )
    source: Path | None = None
    resources: str = "auto"
    resources_interval: int = 200

    @property
    def state_file(self) -> Path:
        """JSON state shown by ``ollama-capture status``."""
        return self.state_dir / "capture-state.json"

    @property
    def log_file(self) -> Path:
        """Timestamped log lines of the runner."""
        return self.state_dir / "capture.log"

    @property
    def lock_file(self) -> Path:
        """flock()ed by ``run`` so two runners never overlap."""
        return self.state_dir / "capture.lock"


_SIZE = re.compile(r"([0-9]+(?:\.[0-9]+)?)\s*([KMGT]i?B|B)?", re.IGNORECASE)
_SIZE_UNITS = {"": 1, "b": 1, "kb": 1000, "mb": 1000**2, "gb": 1000**3, "tb": 1000**4,
               "kib": 1024, "mib": 1024**2, "gib": 1024**3, "tib": 1024**4}  # fmt: skip
_AGE = re.compile(r"([0-9]+(?:\.[0-9]+)?)\s*([smhdw]?)")
_AGE_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_size(value: object) -> int:
    """``2GiB``, ``500MB``, ``1048576`` → bytes."""
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    m = _SIZE.fullmatch(str(value).strip()) if isinstance(value, str) else None
    if not m or float(m.group(1)) <= 0:
        raise ValueError("expected a positive size such as 2GiB, 500MB or a byte count")
    return int(float(m.group(1)) * _SIZE_UNITS[(m.group(2) or "").lower()])


def parse_age(value: object) -> float:
    """``7d``, ``12h``, ``90m``, ``3600`` → seconds."""
    if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
        return float(value)
    m = _AGE.fullmatch(str(value).strip()) if isinstance(value, str) else None
    if not m or float(m.group(1)) <= 0:
        raise ValueError("expected a positive age such as 7d, 12h, 90m or seconds")
    return float(m.group(1)) * _AGE_UNITS[m.group(2)]


def _int_in(low: int, high: int) -> Any:
    def check(value: object) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise ValueError(f"expected an integer from {low} to {high}")
        return value

    return check


def _port_list(value: object) -> list[int]:
    items = value if isinstance(value, list) else [value]
    if not items or len(items) > 16:
        raise ValueError("expected 1 to 16 port numbers")
    return [_int_in(1, 65535)(item) for item in items]


def _interface(value: object) -> str:
    if not isinstance(value, str) or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.:@-]{0,14}", value):
        raise ValueError("expected an interface name such as lo, lo0, eth0 or any")
    return value


def _path(value: object) -> Path:
    if not isinstance(value, str) or not value.strip():
        raise ValueError("expected a path")
    return Path(os.path.expandvars(value)).expanduser()


def _abs_path(value: object) -> Path:
    path = _path(value)
    if not path.is_absolute():
        raise ValueError("expected an absolute path")
    return path


def _method(value: object) -> str:
    if value not in ("auto", "sudo", "direct"):
        raise ValueError("expected auto, sudo or direct")
    return str(value)


def _resources(value: object) -> str:
    from analyzer.resources.registry import parse_spec  # lazy: the runner needs it, `config check` hardly

    if isinstance(value, bool):  # YAML reads a bare off / on as booleans
        return "auto" if value else "off"
    if not isinstance(value, str):
        raise ValueError("expected auto, off or a comma-separated list of resource sources")
    parse_spec(value)
    return value


def _bool(value: object) -> bool:
    if not isinstance(value, bool):
        raise ValueError("expected true or false")
    return value


def _optional(parse: Any) -> Any:
    def check(value: object) -> Any:
        return None if value is None or value is False else parse(value)

    return check


_TOP: dict[str, Any] = {
    "interface": _interface,
    "ports": _port_list,
    "duration": _int_in(1, HELPER_MAX_DURATION),
    "interval": _int_in(1, 86400),
    "output_dir": _path,
    "state_dir": _path,
    "method": _method,
    "helper": _abs_path,
    "spool_dir": _abs_path,
    "analyze": _bool,
    "log_dir": _path,
    "resources": _resources,
    "resources_interval": _int_in(10, 60_000),
}
_RETENTION: dict[str, Any] = {
    "max_files": _optional(_int_in(1, 10**7)),
    "max_bytes": _optional(parse_size),
    "max_age": _optional(parse_age),
}


def _where(node: yaml.Node, source: str) -> str:
    return f"{source}:{node.start_mark.line + 1}"


def _fields(node: yaml.Node, known: dict[str, Any], source: str, prefix: str) -> dict[str, Any]:
    if isinstance(node, yaml.ScalarNode) and node.value == "" and node.tag.endswith(":null"):
        return {}
    if not isinstance(node, yaml.MappingNode):
        raise ConfigError(f"{_where(node, source)}: {prefix or 'config'}: expected a mapping of keys")
    out: dict[str, Any] = {}
    for key_node, value_node in node.value:
        key = key_node.value
        full = f"{prefix}{key}"
        if key == "retention" and not prefix:
            out[key] = _fields(value_node, _RETENTION, source, "retention.")
            continue
        if key not in known:
            choices = ", ".join(sorted([*known, *([] if prefix else ["retention"])]))
            raise ConfigError(f"{_where(key_node, source)}: unknown key {full!r} (known: {choices})")
        if key in out:
            raise ConfigError(f"{_where(key_node, source)}: key {full!r} given twice")
        try:
            value = yaml.safe_load(yaml.serialize(value_node))
            out[key] = known[key](value)
        except ValueError as exc:
            raise ConfigError(f"{_where(value_node, source)}: {full}: {exc}") from None
    return out


def parse_config(text: str, source: str = "<config>") -> CaptureConfig:
    """Parse YAML text into a :class:`CaptureConfig`; raise :class:`ConfigError` on the first problem."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{source}{line}: YAML syntax error: {problem}") from None
    config = CaptureConfig()
    if root is None:
        return config
    values = _fields(root, _TOP, source, "")
    retention = values.pop("retention", None)
    for key, value in values.items():
        setattr(config, key, value)
    if retention:
        for key, value in retention.items():
            setattr(config.retention, key, value)
    if config.duration > config.interval:
        raise ConfigError(f"{source}: duration ({config.duration}) must not exceed interval ({config.interval})")
    return config


def load_config(path: Path | None = None) -> CaptureConfig:
    """Load ``path`` (or the default file if it exists, else built-in defaults)."""
    explicit = path is not None
    path = path or default_config_path()
    if not path.exists():
        if explicit:
            raise ConfigError(f"{path}: no such config file (create one with: ollama-capture config init)")
        return CaptureConfig()
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not a YAML text file (not UTF-8 at byte {exc.start})") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror or exc}") from None
    config = parse_config(text, str(path))
    config.source = path.resolve()
    return config


def example_config() -> str:
    """The commented example written by ``ollama-capture config init``."""
    text = resources.files("capture_scripts").joinpath("templates/capture.yaml").read_text(encoding="utf-8")
    return text.replace("@INTERFACE@", default_interface())
