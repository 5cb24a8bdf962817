"""The text fields of a ``multipart/form-data`` body (``/v1/audio/transcriptions``); file parts are only sized.

Ollama's ``TranscriptionMiddleware`` reads the form fields ``model``, ``prompt``, ``language``,
``response_format`` and the file part ``file``. The record keeps the text fields and never the audio: a file part
becomes ``<file NAME N bytes>``, the way images become a placeholder.
"""

from __future__ import annotations

import re

MAX_FIELD_CHARS = 64 * 1024  # a text field longer than this is not a form field a client sends
_BOUNDARY = re.compile(r'boundary="?([^";,]+)"?', re.IGNORECASE)
_NAME = re.compile(rb'\bname="([^"]*)"', re.IGNORECASE)
_FILENAME = re.compile(rb'\bfilename="([^"]*)"', re.IGNORECASE)


def boundary_of(content_type: str | None) -> str | None:
    """The boundary parameter of a ``multipart/form-data`` Content-Type, or None."""
    if not content_type or "multipart/form-data" not in content_type.lower():
        return None
    match = _BOUNDARY.search(content_type)
    return match.group(1).strip() if match else None


def form_fields(body: bytes, boundary: str) -> dict[str, str]:
    """Each part's name → its text (text fields) or a size placeholder (file parts). Bad parts are skipped."""
    delimiter = b"--" + boundary.encode("latin-1", "replace")
    fields: dict[str, str] = {}
    for part in body.split(delimiter)[1:]:
        if part.startswith(b"--"):
            break  # the closing delimiter
        head, sep, value = part.partition(b"\r\n\r\n")
        if not sep:
            continue
        if value.endswith(b"\r\n"):
            value = value[:-2]
        name = _NAME.search(head)
        if name is None:
            continue
        key = name.group(1).decode("utf-8", "replace")
        filename = _FILENAME.search(head)
        if filename is not None:
            label = filename.group(1).decode("utf-8", "replace")
            fields[key] = f"<file {label} {len(value)} bytes>"
        elif len(value) <= MAX_FIELD_CHARS:
            fields[key] = value.decode("utf-8", "replace")
    return fields
