"""Constants shared by every test: one place for the model, the pacing and Ollama's port."""

from __future__ import annotations

from typing import Any

from analyzer.protocol.endpoints import OLLAMA_PORT

__all__ = ["CLIENT_TIMEOUT_S", "FAST", "MISSING_MODEL", "MODEL", "OLLAMA_PORT"]

MODEL = "llama3.2:1b"
MISSING_MODEL = "nosuch:latest"
CLIENT_TIMEOUT_S = 30.0
# Small but non-zero pacing: streams still have visible gaps between tokens, tests stay quick.
FAST: dict[str, Any] = {"prefill_ms": 2.0, "token_ms": 1.0}
