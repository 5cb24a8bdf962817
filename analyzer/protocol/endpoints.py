"""Which HTTP requests are Ollama traffic, and what kind of interaction each is."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

OLLAMA_PORT = 11434  # Ollama's default port: the one place every default refers to
DEFAULT_OLLAMA_URL = f"http://127.0.0.1:{OLLAMA_PORT}"


def ollama_url(address: str) -> str:
    """An address read the way Ollama's clients read ``OLLAMA_HOST``: empty is ``DEFAULT_OLLAMA_URL``; without a
    scheme it is ``http://`` and, without a port, ``OLLAMA_PORT``. No trailing slash; nothing is validated."""
    address = address.strip()
    if not address:
        return DEFAULT_OLLAMA_URL
    if "://" not in address:
        parts = urlsplit("http://" + address)
        address = "http://" + address.rstrip("/")
        try:
            port = parts.port
        except ValueError:  # a port that is not a number: left for the caller's check to name
            port = -1
        if port is None and parts.hostname:
            address += f":{OLLAMA_PORT}"
    return address.rstrip("/")


API_OLLAMA = "ollama"
API_OPENAI = "openai"
API_ANTHROPIC = "anthropic"

# The record's ``kind`` of an empty-prompt generate/chat: Ollama's preload, and (with ``keep_alive: 0``) unload.
KIND_LOAD = "load"
KIND_UNLOAD = "unload"


@dataclass(frozen=True, slots=True)
class Endpoint:
    """An Ollama endpoint: which API it belongs to, the record's ``kind``, and whether it streams by default."""

    api: str
    kind: str
    streams_by_default: bool = False


_EXACT: dict[str, Endpoint] = {
    "/api/generate": Endpoint(API_OLLAMA, "generate", True),
    "/api/chat": Endpoint(API_OLLAMA, "chat", True),
    "/api/embed": Endpoint(API_OLLAMA, "embed"),
    "/api/embeddings": Endpoint(API_OLLAMA, "embeddings"),
    "/api/pull": Endpoint(API_OLLAMA, "pull", True),
    "/api/push": Endpoint(API_OLLAMA, "push", True),
    "/api/create": Endpoint(API_OLLAMA, "create", True),
    "/api/tags": Endpoint(API_OLLAMA, "tags"),
    "/api/ps": Endpoint(API_OLLAMA, "ps"),
    "/api/show": Endpoint(API_OLLAMA, "show"),
    "/api/version": Endpoint(API_OLLAMA, "version"),
    "/api/copy": Endpoint(API_OLLAMA, "copy"),
    "/api/delete": Endpoint(API_OLLAMA, "delete"),
    "/v1/chat/completions": Endpoint(API_OPENAI, "chat"),
    "/v1/completions": Endpoint(API_OPENAI, "generate"),
    "/v1/embeddings": Endpoint(API_OPENAI, "embed"),
    "/v1/models": Endpoint(API_OPENAI, "models"),
    "/v1/responses": Endpoint(API_OPENAI, "responses"),
    "/v1/images/generations": Endpoint(API_OPENAI, "images"),
    "/v1/images/edits": Endpoint(API_OPENAI, "images"),
    "/v1/audio/transcriptions": Endpoint(API_OPENAI, "transcription"),
    "/v1/messages": Endpoint(API_ANTHROPIC, "messages"),
    "/api/status": Endpoint(API_OLLAMA, "status"),
    "/api/experimental/web_search": Endpoint(API_OLLAMA, "web_search"),
    "/api/experimental/web_fetch": Endpoint(API_OLLAMA, "web_fetch"),
    "/api/experimental/model-recommendations": Endpoint(API_OLLAMA, "recommendations"),
    "/api/me": Endpoint(API_OLLAMA, "account"),
    "/api/signout": Endpoint(API_OLLAMA, "account"),
    "/": Endpoint(API_OLLAMA, "root"),
}

_PREFIXES: tuple[tuple[str, Endpoint], ...] = (
    ("/api/blobs/", Endpoint(API_OLLAMA, "blobs")),
    ("/v1/models/", Endpoint(API_OPENAI, "models")),
    ("/api/user/keys/", Endpoint(API_OLLAMA, "account")),
)


def path_only(target: str) -> str:
    """The path of a request target, without query string or fragment (absolute-form targets too)."""
    if "://" in target:
        rest = target.split("://", 1)[1]
        slash = rest.find("/")
        target = rest[slash:] if slash >= 0 else "/"
    for sep in ("?", "#"):
        cut = target.find(sep)
        if cut >= 0:
            target = target[:cut]
    return target or "/"


def classify(path: str) -> Endpoint | None:
    """The Ollama endpoint a request path belongs to, or None for anything that is not Ollama's API.

    The method does not matter: ``HEAD /``, ``HEAD /api/version``, ``HEAD /api/tags`` and ``HEAD /api/blobs/…``
    get their GET/POST twin's kind (the record's ``method`` says HEAD).
    """
    clean = path_only(path)
    if len(clean) > 1:
        clean = clean.rstrip("/")
    found = _EXACT.get(clean)
    if found is not None:
        return found
    for prefix, endpoint in _PREFIXES:
        if clean.startswith(prefix):
            return endpoint
    return None
