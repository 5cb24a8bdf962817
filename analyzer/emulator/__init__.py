"""A faithful stand-in for ``ollama serve``: Go-exact HTTP framing, deterministic text, controllable pacing.

Public API: ``EmulatorConfig`` (server options, scheduler included), ``ModelProfile`` (per-model load time,
size, out-of-memory), ``EmulatorThread`` (in-process server for tests and the
demo), ``EmulatorServer`` (the asyncio server itself), ``plan_reply``/``expected_text`` (what a request will
produce, for comparing with what a client received). A product feature (``ollama-wire emulate``, the demo),
not test tooling. Imports nothing else of ``analyzer``.
"""

from analyzer.emulator.config import DEFAULT_MODELS, EmulatorConfig, ModelProfile
from analyzer.emulator.plan import ReplyPlan, ToolCall, expected_text, plan_reply
from analyzer.emulator.runner import EmulatorThread, format_url
from analyzer.emulator.server import EmulatorServer

__all__ = [
    "DEFAULT_MODELS",
    "EmulatorConfig",
    "EmulatorServer",
    "EmulatorThread",
    "ModelProfile",
    "ReplyPlan",
    "ToolCall",
    "expected_text",
    "format_url",
    "plan_reply",
]
