"""Ollama's ``GET /api/ps``: the loaded models, their size, how much of it sits in GPU memory, when they expire.

Read directly from the server (not through the proxy, so it is never recorded), at most every
``EVERY_S`` seconds; between reads the last answer stands.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from typing import Any

from analyzer.protocol.endpoints import DEFAULT_OLLAMA_URL
from analyzer.resources.base import MB, Unavailable

EVERY_S = 2.0
TIMEOUT_S = 1.0


def parse_ps(body: bytes | str) -> list[dict[str, Any]]:
    """The ``models`` list of an ``/api/ps`` answer (name, size, size_vram, expires_at), validated."""
    data = json.loads(body)
    models = data.get("models") if isinstance(data, dict) else None
    if not isinstance(models, list):
        raise ValueError("not an /api/ps answer (no models list)")
    return [
        {
            "name": str(m.get("name") or m.get("model") or ""),
            "size": int(m.get("size") or 0),
            "size_vram": int(m.get("size_vram") or 0),
            "expires_at": str(m.get("expires_at") or ""),
        }
        for m in models
        if isinstance(m, dict)
    ]


class OllamaPsSampler:
    """``/api/ps`` of the server at ``base_url`` (``http://127.0.0.1:11434``)."""

    name = "ollama_ps"

    def __init__(self, base_url: str = DEFAULT_OLLAMA_URL) -> None:
        self.base_url = base_url.rstrip("/")
        self.models: list[dict[str, Any]] = []
        self._values: dict[str, float] = {}
        self._read_at = 0.0

    def _fetch(self) -> list[dict[str, Any]]:
        with urllib.request.urlopen(f"{self.base_url}/api/ps", timeout=TIMEOUT_S) as answer:
            return parse_ps(answer.read(1024 * 1024))

    def open(self) -> None:
        if not self.base_url.startswith("http://"):
            raise Unavailable(f"{self.base_url}: only plain http:// servers are asked")
        try:
            self.models = self._fetch()
        except (OSError, ValueError) as exc:
            reason = getattr(exc, "reason", None) or exc
            raise Unavailable(f"{self.base_url}/api/ps: {reason}") from None
        self._store()

    def _store(self) -> None:
        self._values = {
            "ollama_vram_mb": sum(m["size_vram"] for m in self.models) / MB,
            "ollama_models": float(len(self.models)),
        }
        self._read_at = time.monotonic()

    def read(self) -> dict[str, float]:
        if time.monotonic() - self._read_at >= EVERY_S:
            try:
                self.models = self._fetch()
                self._store()
            except (OSError, ValueError):
                self._read_at = time.monotonic()
                return {}
        return dict(self._values)

    def details(self) -> dict[str, object]:
        return {"url": f"{self.base_url}/api/ps", "models": self.models}

    def close(self) -> None:
        pass
