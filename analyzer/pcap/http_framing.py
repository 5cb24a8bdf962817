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
    """Chunked framing is broken.

    ``body`` holds what was decoded before the fault and ``at`` the offset in the fed data where the
    offending line (or its carried-over start) begins: bytes before it were valid framing and are done.
    """

    def __init__(self, message: str, body: bytes = b"", at: int = 0) -> None:
        super().__init__(message)
        self.body = body
        self.at = at


class ChunkDecoder:
    """Incremental ``Transfer-Encoding: chunked`` decoder.

    Work is linear in the input: every step of :meth:`feed` consumes at least one byte or ends the
    call, line searches look at most ``_MAX_CHUNK_LINE`` bytes ahead, and body bytes are sliced from a
    memoryview (copied once, when joined).
    """

    SIZE, DATA, DATA_END, TRAILER, DONE = range(5)
    __slots__ = ("line", "remaining", "state")

    def __init__(self) -> None:
        self.state = self.SIZE
        self.remaining = 0
        self.line = b""

    def feed(self, data: bytes) -> tuple[bytes, int]:
        """Decode from ``data``: (body bytes, bytes of ``data`` consumed). Stops after the final
        chunk's trailer (``state == DONE``); raises :class:`ChunkError` on broken framing."""
        out: list[bytes | memoryview] = []
        view = memoryview(data)
        i = 0
        n = len(data)
        while i < n:
            state = self.state
            if state == self.DATA:
                take = min(self.remaining, n - i)
                out.append(view[i : i + take])
                i += take
                self.remaining -= take
                if not self.remaining:
                    self.state = self.DATA_END
            elif state == self.DONE:
                break
            else:
                line_start = 0 if self.line else i
                limit = i + _MAX_CHUNK_LINE + 1 - len(self.line)
                j = data.find(b"\n", i, max(limit, i))
                if j < 0:
                    if n - i + len(self.line) > _MAX_CHUNK_LINE:
                        raise ChunkError("chunk line too long", b"".join(out), line_start)
                    self.line += data[i:]
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
                        raise ChunkError(f"bad chunk size line {line[:40]!r}", b"".join(out), line_start) from None
                    if size < 0:
                        raise ChunkError("negative chunk size", b"".join(out), line_start)
                    if size:
                        self.state, self.remaining = self.DATA, size
                    else:
                        self.state = self.TRAILER
                elif state == self.DATA_END:
                    if line:
                        raise ChunkError("chunk data not followed by CRLF", b"".join(out), line_start)
                    self.state = self.SIZE
                elif not line:  # TRAILER: an empty line ends the message
                    self.state = self.DONE
        if not out:
            return b"", i
        if len(out) == 1 and len(out[0]) == n:
            return data, i
        return b"".join(out), i


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
    return int(text) if text.isascii() and text.isdigit() else -1


def is_chunked(headers: Headers) -> bool:
    return "transfer-encoding" in headers and headers["transfer-encoding"].lower().rstrip().endswith("chunked")
