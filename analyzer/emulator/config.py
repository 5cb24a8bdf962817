"""Server-wide emulator settings (the ``ollama-wire emulate`` options)."""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_MODELS: tuple[str, ...] = ("llama3.2:1b", "qwen3:0.6b")
EMULATED_VERSION = "0.12.6"


@dataclass(frozen=True)
class EmulatorConfig:
    """What every request gets unless it overrides a value itself (see ``docs/emulator.md``).

    ``tokens`` is the natural reply length (``done_reason: stop``); a smaller ``num_predict``/``max_tokens``
    cuts it (``length``). ``error_after``/``close_after`` count emitted tokens, thinking included.
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

    def has_model(self, name: str) -> bool:
        """Whether ``name`` exists, with Ollama's rule that a missing tag means ``:latest``."""
        return resolve_model(name, self.models) is not None


def resolve_model(name: str, models: tuple[str, ...] | list[str] | set[str]) -> str | None:
    """The stored model name that ``name`` refers to, or None."""
    if name in models:
        return name
    if ":" not in name.rsplit("/", 1)[-1] and f"{name}:latest" in models:
        return f"{name}:latest"
    return None
