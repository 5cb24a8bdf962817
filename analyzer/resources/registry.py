"""The sources by name, and opening them from a spec: ``auto`` | ``off`` | ``nvidia,process,...``.

``auto`` opens every source that works here, preferring ``macmon`` (no root) over ``powermetrics`` on a Mac, except
``ollama_ps`` while sampling: its ``GET /api/ps`` every 2 s would show up in any capture of Ollama's port (and in
a proxy's upstream leg), so it is sampled only when listed. ``resources --check`` asks it once.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from analyzer.protocol.endpoints import OLLAMA_PORT
from analyzer.resources.base import Sampler, Unavailable
from analyzer.resources.macmon import MacmonSampler
from analyzer.resources.nvidia import NvmlSampler
from analyzer.resources.ollama_ps import OllamaPsSampler
from analyzer.resources.powermetrics import PowermetricsSampler
from analyzer.resources.process import HostSampler, ProcessSampler

SOURCE_NAMES = ("nvidia", "macmon", "powermetrics", "process", "host", "ollama_ps")
AUTO_SKIPS = ("ollama_ps",)  # left out of `auto` while sampling; see the module docstring


@dataclass
class Target:
    """Where the Ollama server is (for the process and ``/api/ps`` sources) and how often to sample."""

    host: str = "127.0.0.1"
    port: int = OLLAMA_PORT
    interval_ms: int = 200

    @property
    def base_url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host and not self.host.startswith("[") else self.host
        return f"http://{host}:{self.port}"


def factories(target: Target) -> dict[str, Callable[[], Sampler]]:
    return {
        "nvidia": NvmlSampler,
        "macmon": lambda: MacmonSampler(target.interval_ms),
        "powermetrics": lambda: PowermetricsSampler(target.interval_ms),
        "process": lambda: ProcessSampler(target.port),
        "host": HostSampler,
        "ollama_ps": lambda: OllamaPsSampler(target.base_url),
    }


def parse_spec(spec: str) -> list[str] | None:
    """The source names a spec asks for (None for ``auto``, [] for ``off``); ValueError for an unknown name."""
    text = spec.strip().lower()
    if text == "auto":
        return None
    if text in ("off", "none", ""):
        return []
    names = [part.strip() for part in text.split(",") if part.strip()]
    for name in names:
        if name not in SOURCE_NAMES:
            raise ValueError(f"unknown resource source {name!r} (sources: {', '.join(SOURCE_NAMES)}; or auto, off)")
    return list(dict.fromkeys(names))


@dataclass
class Opened:
    """The samplers that opened, and why each other source did not."""

    samplers: list[Sampler] = field(default_factory=list)
    unavailable: dict[str, str] = field(default_factory=dict)


def open_samplers(spec: str, target: Target, auto_skips: tuple[str, ...] = AUTO_SKIPS) -> Opened:
    """Open the sources ``spec`` names (ValueError for a bad spec); none of them may hang or raise here.

    ``auto_skips`` are left out of ``auto`` (not of an explicit list); a one-off check passes ``()``.
    """
    wanted = parse_spec(spec)
    names = [n for n in SOURCE_NAMES if n not in auto_skips] if wanted is None else wanted
    made = factories(target)
    opened = Opened()
    for name in names:
        if wanted is None and name == "powermetrics" and any(s.name == "macmon" for s in opened.samplers):
            opened.unavailable[name] = "not needed: macmon is running (preferred, no root)"
            continue
        sampler = made[name]()
        try:
            sampler.open()
        except Unavailable as exc:
            opened.unavailable[name] = str(exc)
            continue
        except Exception as exc:  # a source must never take the others down
            opened.unavailable[name] = f"failed to start: {type(exc).__name__}: {exc}"
            continue
        opened.samplers.append(sampler)
    return opened
