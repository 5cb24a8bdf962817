"""Which request paths are Ollama's API, and what each is: exact Endpoint values."""

from __future__ import annotations

import pytest

from analyzer.protocol.endpoints import API_ANTHROPIC, API_OLLAMA, API_OPENAI, Endpoint, classify, path_only


@pytest.mark.parametrize(
    ("target", "path"),
    [
        ("/api/chat", "/api/chat"),
        ("/api/chat?x=1#f", "/api/chat"),
        ("/api/tags#top", "/api/tags"),
        ("http://127.0.0.1:11434/api/generate?stream=1", "/api/generate"),
        ("https://gpu-box", "/"),
        ("", "/"),
        ("?only=query", "/"),
    ],
)
def test_path_only(target: str, path: str) -> None:
    assert path_only(target) == path


@pytest.mark.parametrize(
    ("path", "endpoint"),
    [
        ("/api/generate", Endpoint(API_OLLAMA, "generate", True)),
        ("/api/chat/", Endpoint(API_OLLAMA, "chat", True)),
        ("/api/pull?insecure=true", Endpoint(API_OLLAMA, "pull", True)),
        ("/api/embed", Endpoint(API_OLLAMA, "embed", False)),
        ("/api/tags", Endpoint(API_OLLAMA, "tags", False)),
        ("/api/blobs/sha256:abc", Endpoint(API_OLLAMA, "blobs", False)),
        ("/v1/chat/completions", Endpoint(API_OPENAI, "chat", False)),
        ("/v1/completions", Endpoint(API_OPENAI, "generate", False)),
        ("/v1/models/llama3.2:1b", Endpoint(API_OPENAI, "models", False)),
        ("http://h:11434/v1/embeddings", Endpoint(API_OPENAI, "embed", False)),
        ("/", Endpoint(API_OLLAMA, "root", False)),
        # today's Ollama (server/routes.go, v0.24.0 and v0.33)
        ("/v1/messages", Endpoint(API_ANTHROPIC, "messages", False)),
        ("/v1/messages?beta=true", Endpoint(API_ANTHROPIC, "messages", False)),
        ("/v1/responses", Endpoint(API_OPENAI, "responses", False)),
        ("/v1/images/generations", Endpoint(API_OPENAI, "images", False)),
        ("/v1/images/edits", Endpoint(API_OPENAI, "images", False)),
        ("/v1/audio/transcriptions", Endpoint(API_OPENAI, "transcription", False)),
        ("/api/status", Endpoint(API_OLLAMA, "status", False)),
        ("/api/experimental/web_search", Endpoint(API_OLLAMA, "web_search", False)),
        ("/api/experimental/web_fetch", Endpoint(API_OLLAMA, "web_fetch", False)),
        ("/api/experimental/model-recommendations", Endpoint(API_OLLAMA, "recommendations", False)),
        ("/api/me", Endpoint(API_OLLAMA, "account", False)),
        ("/api/signout", Endpoint(API_OLLAMA, "account", False)),
        ("/api/user/keys/c3NoLWVkMjU1MTk", Endpoint(API_OLLAMA, "account", False)),
    ],
)
def test_classify_known_paths(path: str, endpoint: Endpoint) -> None:
    assert classify(path) == endpoint


@pytest.mark.parametrize(
    "path",
    ["/metrics", "/api", "/api/generatex", "/v1/responsesx", "/v1/message", "/api/user/keys", "/index.html", "/v1"],
)
def test_classify_everything_else_is_not_ollama(path: str) -> None:
    assert classify(path) is None
