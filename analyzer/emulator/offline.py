"""The endpoints of today's Ollama that reach ollama.com or generate media, as an offline server answers them.

The emulator is a server with ``OLLAMA_NO_CLOUD=1`` and no network (server/routes.go, v0.24.0):
``/api/status`` says the cloud is disabled; web search/fetch are refused with Ollama's 403 text; ``/api/me``
cannot reach the account service (503 ``account unavailable``); sign-out fails the way it does offline (500);
model recommendations are the built-in defaults (here: none). Image generation and transcription need models
the emulator does not have: they answer like Ollama for a model that cannot do them.
"""

from __future__ import annotations

from analyzer.emulator.http11 import Request, ResponseWriter
from analyzer.emulator.replies import openai_error_body, send_json
from analyzer.emulator.state import ServerState

CLOUD_DISABLED = "ollama cloud is disabled"


async def status(state: ServerState, request: Request, response: ResponseWriter) -> None:
    """``GET /api/status``."""
    await send_json(response, {"cloud": {"disabled": True, "source": "env"}})


async def _web(request: Request, response: ResponseWriter, operation: str) -> None:
    if not request.body.strip():
        await send_json(response, {"error": "missing request body"}, 400)
        return
    await send_json(response, {"error": f"{CLOUD_DISABLED}: {operation} is unavailable"}, 403)


async def web_search(state: ServerState, request: Request, response: ResponseWriter) -> None:
    """``POST /api/experimental/web_search``."""
    await _web(request, response, "web search")


async def web_fetch(state: ServerState, request: Request, response: ResponseWriter) -> None:
    """``POST /api/experimental/web_fetch``."""
    await _web(request, response, "web fetch")


async def recommendations(state: ServerState, request: Request, response: ResponseWriter) -> None:
    """``GET /api/experimental/model-recommendations``."""
    await send_json(response, {"recommendations": []})


async def whoami(state: ServerState, request: Request, response: ResponseWriter) -> None:
    """``POST /api/me``: the account service is out of reach."""
    await send_json(response, {"error": "account unavailable"}, 503)


async def signout(state: ServerState, request: Request, response: ResponseWriter) -> None:
    """``POST /api/signout`` and ``DELETE /api/user/keys/{key}``."""
    await send_json(response, {"error": "there was an error signing out"}, 500)


async def images(state: ServerState, request: Request, response: ResponseWriter) -> None:
    """``POST /v1/images/generations`` and ``/v1/images/edits``: no emulated model generates images."""
    await send_json(response, openai_error_body(400, "model does not support image generation"), 400)


async def transcriptions(state: ServerState, request: Request, response: ResponseWriter) -> None:
    """``POST /v1/audio/transcriptions``: no emulated model takes audio."""
    await send_json(response, openai_error_body(400, "model does not support audio input"), 400)
