"""HTTP/1.1 message framing for reassembled streams: header blocks, Content-Length, chunked bodies."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping

_MAX_CHUNK_LINE = 4096


class Headers(Mapping[str, str]):
    """Header fields with case-insensitive lookup; iteration keeps the names as sent."""

    __slots__ = ("_fields",)

    def __init__(self, pairs: Iterable[tuple[str, str]] = ()) -> None:
        self._fields: dict[str, tuple[str, str]] = {}
        for name, value in pairs:
            key = name.lower()
            if key in self._fields:
                self._fields[key] = (self._fields[key][0], self._fields[key][1] + ", " + value)
            else:
                self._fields[key] = (name, value)

    def __getitem__(self, name: str) -> str:
        return self._fields[name.lower()][1]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._fields

    def __iter__(self) -> Iterator[str]:
        return (name for name, _value in self._fields.values())

    def __len__(self) -> int:
        return len(self._fields)

    def __repr__(self) -> str:
        return f"Headers({dict(self.items())!r})"


class ChunkError(ValueError):
    """Chunked framing is broken."""


class ChunkDecoder:
    """Incremental ``Transfer-Encoding: chunked`` decoder."""

    SIZE, DATA, DATA_END, TRAILER, DONE = range(5)
    __slots__ = ("line", "remaining", "state")

    def __init__(self) -> None:
        self.state = self.SIZE
        self.remaining = 0
        self.line = b""

    def feed(self, data: bytes) -> tuple[bytes, int]:
        """Decode from ``data``: (body bytes, bytes of ``data`` consumed). Stops after the final
        chunk's trailer (``state == DONE``); raises :class:`ChunkError` on broken framing."""
        out: list[bytes] = []
        i = 0
        n = len(data)
        while i < n:
            state = self.state
            if state == self.DATA:
                take = min(self.remaining, n - i)
                out.append(data[i : i + take] if take != n else data)
                i += take
                self.remaining -= take
                if not self.remaining:
                    self.state = self.DATA_END
            elif state == self.DONE:
                break
            else:
                j = data.find(b"\n", i)
                if j < 0:
                    self.line += data[i:]
                    if len(self.line) > _MAX_CHUNK_LINE:
                        raise ChunkError("chunk line too long")
                    i = n
                    break
                line = (self.line + data[i:j]) if self.line else data[i:j]
                self.line = b""
                i = j + 1
                if line.endswith(b"\r"):
                    line = line[:-1]
                if state == self.SIZE:
                    try:
                        size = int(line.split(b";", 1)[0].strip(), 16)
                    except ValueError:
                        raise ChunkError(f"bad chunk size line {line[:40]!r}") from None
                    if size < 0:
                        raise ChunkError("negative chunk size")
                    if size:
                        self.state, self.remaining = self.DATA, size
                    else:
                        self.state = self.TRAILER
                elif state == self.DATA_END:
                    if line:
                        raise ChunkError("chunk data not followed by CRLF")
                    self.state = self.SIZE
                elif not line:  # TRAILER: an empty line ends the message
                    self.state = self.DONE
        return (out[0] if len(out) == 1 else b"".join(out)), i


def parse_head(head: bytes) -> tuple[str, Headers] | None:
    """(first line, headers) of a message head without its blank line; None if malformed."""
    lines = head.decode("latin-1").split("\r\n")
    pairs: list[tuple[str, str]] = []
    for line in lines[1:]:
        if line[:1] in (" ", "\t") and pairs:
            name, value = pairs[-1]
            pairs[-1] = (name, value + " " + line.strip())
            continue
        name, sep, value = line.partition(":")
        if not sep or not name or name != name.strip():
            return None
        pairs.append((name, value.strip()))
    return lines[0], Headers(pairs)


def content_length(headers: Headers) -> int | None:
    """Content-Length as int; -1 if present but invalid; None if absent."""
    if "content-length" not in headers:
        return None
    text = headers["content-length"].split(",")[0].strip()
    return int(text) if text.isdigit() else -1


def is_chunked(headers: Headers) -> bool:
    return "transfer-encoding" in headers and headers["transfer-encoding"].lower().rstrip().endswith("chunked")
