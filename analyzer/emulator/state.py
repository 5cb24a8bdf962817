"""Mutable per-server state: which models exist (pull/create add some) and which are loaded."""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass, field

from analyzer.emulator.config import EmulatorConfig, resolve_model

KEEP_ALIVE_S = 300


@dataclass
class ServerState:
    """Shared by all connections of one server; only touched from its event loop thread."""

    config: EmulatorConfig
    models: list[str] = field(default_factory=list)
    loaded: dict[str, float] = field(default_factory=dict)
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def __post_init__(self) -> None:
        if not self.models:
            self.models = list(self.config.models)

    def resolve(self, name: str) -> str | None:
        """The existing model ``name`` refers to, or None."""
        return resolve_model(name, self.models)

    def add_model(self, name: str) -> None:
        """Make ``name`` exist (after a pull or create)."""
        full = name if ":" in name.rsplit("/", 1)[-1] else f"{name}:latest"
        if full not in self.models:
            self.models.append(full)

    def mark_loaded(self, name: str) -> None:
        """Record that ``name`` served a request, for ``/api/ps``."""
        self.loaded[name] = time.time() + KEEP_ALIVE_S

    def next_id(self) -> int:
        """A fresh number for OpenAI ``chatcmpl-N`` / ``cmpl-N`` ids."""
        return next(self._ids)
