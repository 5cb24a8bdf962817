"""The companion's copy of an interaction the proxy is recording, for the observers that watch it.

The observers (live publisher, export, resource sampling) take an :class:`InteractionBuilder`. The companion
never sees the response bytes: a :class:`MirroredBuilder` knows the request (method, path, and the body when the
proxy sent it) like any builder, and answers ``in_flight``/``response_tail`` with the latest ``progress`` the
proxy sent.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from analyzer.companion import wire
from analyzer.protocol.interaction import InFlight, InteractionBuilder


class MirroredBuilder(InteractionBuilder):
    """A request-only builder plus the proxy's latest snapshot of the response."""

    def __init__(self, message: dict[str, Any]) -> None:
        super().__init__(
            source="proxy",
            client=str(message.get("client") or ""),
            server=str(message.get("server") or ""),
            record_id=str(message["id"]),
            redaction=str(message.get("redaction") or ""),
        )
        at = message.get("at")
        self.request_started(float(at) if at is not None else 0.0, str(message["method"]), str(message["path"]), None)
        self.size = int(message.get("size") or 0)
        self.has_body = False
        self.announced = False  # told to the observers as started (not only pending)
        self.add_body(message)
        self.state: InFlight | None = None
        self.tail = ""

    def add_body(self, message: dict[str, Any]) -> bool:
        """Take the request body from a ``start`` message, once (a later ``start`` may bring it); True if taken."""
        body = message.get("body")
        if body is None or self.has_body:
            return False
        self.has_body = True
        self.request_body(wire.body_bytes(body), self.started_at or 0.0)
        return True

    def progressed(self, message: dict[str, Any]) -> None:
        self.state = wire.in_flight_of(message["s"])
        if "tail" in message:
            self.tail = str(message["tail"] or "")

    def in_flight(self) -> InFlight:
        if self.state is None:
            return dataclasses.replace(super().in_flight(), request_bytes=self.size)
        return self.state

    def response_tail(self, max_chars: int) -> str:
        return self.tail[-max_chars:] if max_chars > 0 else ""
