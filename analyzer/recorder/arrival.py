"""The earliest honest request-arrival time mitmproxy gives, for ``started_at``.

``request.timestamp_start`` is taken when mitmproxy *parses* the request head. On a new connection that
is well after the bytes arrived: the kernel completes the handshake and queues the request bytes, then
mitmproxy accepts the connection, reads the data, chooses a layer and only then parses the head —
0.4–5.4 ms later at 16 concurrent new connections. mitmproxy has no "bytes received" hook, but it calls
``next_layer`` as soon as a connection's first data has been read; that moment, checked against the
connection's accept time (``client_conn.timestamp_start``), bounds the first request's arrival (see
:meth:`ArrivalClock.started_at`).
Later requests on a kept-alive connection keep ``timestamp_start``: their head is parsed in the same
event-loop step that read it. Remaining bias: see docs/record.md (``started_at``).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from typing import Any

METADATA_KEY = "ollama_wire_first_bytes_at"
# How much earlier than mitmproxy read them a connection's first bytes may be taken to have arrived. Measured
# here: they are already waiting in the kernel when mitmproxy gets round to reading them (0.3-10 ms after its
# accept callback); a client may also connect first and send later, so the credit is small and bounded.
CREDIT_S = 0.001
MAX_TRACKED = 65536  # connections whose first bytes were seen but no request yet (bounded)


class ArrivalClock:
    """Notes when each client connection's first bytes were read; hands that time to its first request."""

    def __init__(self) -> None:
        self._first_bytes: OrderedDict[str, float] = OrderedDict()
        self._stamped: set[str] = set()

    def next_layer(self, nextlayer: Any) -> None:
        """mitmproxy asks for a layer when data arrives: the first time a client connection has data, note it."""
        client = nextlayer.context.client
        key = client.id
        if key in self._stamped:
            return
        if not nextlayer.data_client():
            return
        if len(self._stamped) > 4 * MAX_TRACKED:  # open connections only; bounded even if a disconnect is missed
            self._stamped.clear()
        self._stamped.add(key)
        self._first_bytes[key] = time.time()
        if len(self._first_bytes) > MAX_TRACKED:
            old, _ = self._first_bytes.popitem(last=False)
            self._stamped.discard(old)

    def requestheaders(self, flow: Any) -> None:
        """The connection's first request takes the noted time (once)."""
        at = self._first_bytes.pop(flow.client_conn.id, None)
        if at is not None:
            flow.metadata[METADATA_KEY] = at

    def client_disconnected(self, client: Any) -> None:
        self._first_bytes.pop(client.id, None)
        self._stamped.discard(client.id)

    @staticmethod
    def started_at(flow: Any) -> float:
        """When the request began to arrive (never later than mitmproxy's head-parse time).

        A connection's first request: over TLS, when the handshake completed (the request follows it);
        otherwise when its first bytes were read, less at most ``CREDIT_S`` (they were usually waiting in
        the kernel already) but never before the connection was accepted. So ``started_at`` is never more
        than ``CREDIT_S`` before the client really sent. Later requests on the connection: the parse time.
        """
        parsed = float(flow.request.timestamp_start)
        first = flow.metadata.get(METADATA_KEY)
        if first is None:
            return parsed
        conn = flow.client_conn
        tls_done = getattr(conn, "timestamp_tls_setup", None)
        if tls_done is not None:
            return min(float(tls_done), parsed)
        start = float(first) - CREDIT_S
        opened = getattr(conn, "timestamp_start", None)
        if opened is not None and opened > start:
            start = float(opened)
        return min(start, parsed)
