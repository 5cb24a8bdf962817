"""Request bodies sent with ``Content-Encoding: zstd`` (the OpenAI and Codex clients compress ``/v1/*`` bodies).

The compressed bytes are kept (up to the request cap) and decoded when the body is read, never into more than
the cap plus one byte: a small compressed body cannot inflate into gigabytes here. ``zstandard`` comes with
mitmproxy; without it the body is flagged ``encoded_body`` and left unread.
"""

from __future__ import annotations

import io

from analyzer.protocol.record import FLAG_ENCODED_BODY, FLAG_TRUNCATED_BODY


class ZstdBody:
    """A zstd-compressed request body, fed in fragments, decoded on demand."""

    def __init__(self, max_bytes: int) -> None:
        self._max = max_bytes
        self._compressed = bytearray()
        self._cut = False
        self._decoded: tuple[bytes, list[str]] | None = None

    def feed(self, data: bytes) -> None:
        room = self._max - len(self._compressed)
        if len(data) > room:
            self._cut = True
            data = data[: max(room, 0)]
        self._compressed += data
        self._decoded = None

    def decoded(self) -> tuple[bytes, list[str]]:
        """The decoded body (at most the cap) and the flags reading it raised (encoded_body, truncated_body)."""
        if self._decoded is None:
            self._decoded = self._decode()
        return self._decoded

    def _decode(self) -> tuple[bytes, list[str]]:
        if not self._compressed:
            return b"", []
        try:
            import zstandard
        except ImportError:  # pragma: no cover - mitmproxy depends on it
            return b"", [FLAG_ENCODED_BODY]
        flags = [FLAG_TRUNCATED_BODY] if self._cut else []
        source = io.BytesIO(bytes(self._compressed))
        reader = zstandard.ZstdDecompressor().stream_reader(source, read_across_frames=True)
        out = bytearray()
        try:
            while len(out) <= self._max:
                piece = reader.read(min(1024 * 1024, self._max + 1 - len(out)))
                if not piece:
                    break
                out += piece
        except zstandard.ZstdError:
            if not self._cut:  # a cut frame fails at its end: what came before is still the body
                return bytes(out), [FLAG_ENCODED_BODY]
        if len(out) > self._max:
            return bytes(out[: self._max]), [*flags, FLAG_TRUNCATED_BODY]
        return bytes(out), flags
