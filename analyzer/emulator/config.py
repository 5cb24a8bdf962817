"""Server-wide emulator settings (the ``ollama-wire emulate`` options) and per-model profiles."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

DEFAULT_MODELS: tuple[str, ...] = ("llama3.2:1b", "qwen3:0.6b")
EMULATED_VERSION = "0.12.6"

GIB = 1024**3
DEFAULT_MODEL_SIZE = 2 * GIB  # what /api/ps reports for a loaded model without a profile
DEFAULT_MEMORY = 16 * GIB  # memory the emulated machine offers to models (OOM, eviction)
DEFAULT_NUM_CTX = 4096  # Ollama 0.12's default context length
DEFAULT_KEEP_ALIVE_S = 300.0  # Ollama's default OLLAMA_KEEP_ALIVE (5m)
FOREVER = math.inf  # a negative keep_alive: never unload


@dataclass(frozen=True)
class ModelProfile:
    """How one model behaves in the scheduler (``EmulatorConfig.profiles``).

    ``load_ms`` (None: the server's ``load_ms``) is spent on the first request that finds the model unloaded;
    ``size``/``size_vram`` are what ``/api/ps`` reports and what counts against ``memory``; ``oom`` makes every
    load fail with Ollama's out-of-memory error (as does a ``size`` above the server's ``memory``).
    ``thinking``/``tools`` False: the model's template supports neither (like SmolLM2's ChatML), so a request with
    ``think`` or ``tools`` gets Ollama's 400.
    """

    load_ms: float | None = None
    size: int = DEFAULT_MODEL_SIZE
    size_vram: int | None = None
    oom: bool = False
    thinking: bool = True
    tools: bool = True

    @property
    def vram(self) -> int:
        """Bytes reported as ``size_vram`` (all of ``size`` unless told otherwise)."""
        return self.size if self.size_vram is None else self.size_vram


@dataclass(frozen=True)
class EmulatorConfig:
    """What every request gets unless it overrides a value itself (see ``docs/emulator.md``).

    ``tokens`` is the natural reply length (``done_reason: stop``); a smaller ``num_predict``/``max_tokens``
    cuts it (``length``). ``error_after``/``close_after``/``stall_after`` count emitted tokens, thinking
    included. Scheduler: ``load_ms`` (first use of a model), ``keep_alive_s`` (negative: forever),
    ``num_parallel`` and ``max_loaded_models`` (0: unlimited), ``memory`` (bytes), ``num_ctx``, ``profiles``
    (model name → ``ModelProfile`` or a dict of its fields; named models are added to ``models``).
    ``any_model``: every model name exists (no 404), as a server where a client may name anything.
    """

    models: tuple[str, ...] = DEFAULT_MODELS
    tokens: int = 24
    think_tokens: int = 8
    prefill_ms: float = 50.0
    token_ms: float = 10.0
    error_after: int | None = None
    close_after: int | None = None
    fail_status: int | None = None
    openai_legacy_finish: bool = False
    pull_step_ms: float = 0.0  # pause between /api/pull (push, create) progress objects
    version: str = EMULATED_VERSION
    load_ms: float = 0.0
    keep_alive_s: float = DEFAULT_KEEP_ALIVE_S
    num_parallel: int = 0
    max_loaded_models: int = 0
    memory: int = DEFAULT_MEMORY
    num_ctx: int = DEFAULT_NUM_CTX
    stall_after: int | None = None
    stall_ms: float = 0.0
    profiles: Mapping[str, ModelProfile] = field(default_factory=dict)
    any_model: bool = False  # answer every model name as if it had been pulled (tests of hostile/many names)
    max_queue: int = 0  # OLLAMA_MAX_QUEUE: requests waiting for the scheduler beyond this get 503 (0: unlimited)
    body_log: str | None = None  # a file getting one JSON line per request received: time, method, path, body sha256

    def __post_init__(self) -> None:
        profiles = {name: _profile(value) for name, value in dict(self.profiles).items()}
        object.__setattr__(self, "profiles", profiles)
        object.__setattr__(self, "models", tuple(self.models) + tuple(n for n in profiles if n not in self.models))

    def profile(self, name: str) -> ModelProfile:
        """The profile of model ``name`` (the default one when none was given)."""
        return self.profiles.get(name) or ModelProfile()


def _profile(value: ModelProfile | Mapping[str, Any]) -> ModelProfile:
    if isinstance(value, ModelProfile):
        return value
    if isinstance(value, Mapping):
        return ModelProfile(**value)
    raise TypeError(f"a model profile must be a ModelProfile or a dict, got {value!r}")


def resolve_model(name: str, models: tuple[str, ...] | list[str] | set[str]) -> str | None:
    """The stored model name that ``name`` refers to, or None."""
    if name in models:
        return name
    if ":" not in name.rsplit("/", 1)[-1] and f"{name}:latest" in models:
        return f"{name}:latest"
    return None
