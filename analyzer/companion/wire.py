"""What the proxy and its companion say to each other: one JSON object per line over the companion's own pipes.

Proxy → companion (the companion's stdin):

* ``{"t":"start","id",...}``: an interaction began (request known). ``body`` (the request body, bytes as a
  surrogate-escaped string) only while someone watches the live feed; ``size`` is the body's full length.
  ``pending: true``: the response has not started yet (shown as waiting).
* ``{"t":"progress","id","s":[InFlight fields],"tail"?}``: the state so far, coalesced by the proxy's ticker.
* ``{"t":"forget","id"}``: a pending request the recorder never took over.
* ``{"t":"record","seq":N,"r":{record}}``: a finished record; the companion writes it and acks ``seq``.

Companion → proxy (its stdout): ``{"ack":[N,...]}`` once records are in the log (or its fallback file),
``{"ready":PID}`` once its feeds are open, ``{"watching":bool}`` when live subscribers come and go,
``{"alive":1}`` every second (a heartbeat).
Both pipes belong to the two processes only: nothing is reachable from outside (no socket file, no port).
"""

from __future__ import annotations

import json
from dataclasses import fields
from typing import Any

from analyzer.protocol.interaction import InFlight, InteractionBuilder
from analyzer.protocol.record import COLUMNS, InteractionRecord

START = "start"
PROGRESS = "progress"
FORGET = "forget"
RECORD = "record"
LAYERS = 11  # the position of InFlight.layers


def line(message: dict[str, Any]) -> bytes:
    """One message as a line (ASCII JSON: lone surrogates of a body's undecodable bytes survive the trip)."""
    return json.dumps(message, separators=(",", ":")).encode("ascii") + b"\n"


def body_text(data: bytes) -> str:
    return data.decode("utf-8", "surrogateescape")


def body_bytes(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape")


def start_message(
    builder: InteractionBuilder, body: bytes | None, *, pending: bool = False, size: int | None = None
) -> bytes:
    """``start`` for ``builder`` (``body``: the request body to pass on, or None when nobody watches; ``size``:
    the body's length when the caller knows it)."""
    message: dict[str, Any] = {
        "t": START,
        "id": builder.record_id,
        "at": builder.started_at,
        "client": builder.client,
        "server": builder.server,
        "method": builder.method,
        "path": builder.path,
        "redaction": builder.redaction,
        "size": builder.in_flight().request_bytes if size is None else size,
    }
    if body is not None:
        message["body"] = body_text(body)
    if pending:
        message["pending"] = True
    return line(message)


_IN_FLIGHT_FIELDS = tuple(f.name for f in fields(InFlight))


def progress_message(record_id: str, state: InFlight, tail: str | None) -> bytes:
    # the fields in order, as they are (``astuple`` would deep-copy each one first)
    values = [getattr(state, name) for name in _IN_FLIGHT_FIELDS]
    message: dict[str, Any] = {"t": PROGRESS, "id": record_id, "s": values}
    if tail is not None:
        message["tail"] = tail
    return line(message)


def in_flight_of(values: list[Any]) -> InFlight:
    """The :class:`InFlight` a ``progress`` message carries (layers come back as lists: made tuples again)."""
    fields = list(values)
    fields[LAYERS] = {digest: (int(done), int(total)) for digest, (done, total) in dict(fields[LAYERS]).items()}
    return InFlight(*fields)


_encode = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
# Columns whose default is None: an empty one need not cross the pipe (``from_dict`` restores the default).
_NONE_BY_DEFAULT = tuple(f.name for f in fields(InteractionRecord) if f.default is None)
_ALWAYS = tuple(name for name in COLUMNS if name not in _NONE_BY_DEFAULT)


def record_line(seq: int, record: InteractionRecord) -> bytes:
    """``record``: the finished record, encoded once (in the proxy's sender thread, off the event loop), without
    its empty columns (most of them are: a chat has no pull progress, no replay, no resources yet)."""
    values = {name: getattr(record, name) for name in _ALWAYS}
    values.update((name, value) for name in _NONE_BY_DEFAULT if (value := getattr(record, name)) is not None)
    return b'{"t":"record","seq":%d,"r":%s}\n' % (seq, _encode(values).encode("utf-8", "replace"))


def forget_message(record_id: str) -> bytes:
    return line({"t": FORGET, "id": record_id})
