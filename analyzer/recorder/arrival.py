"""When a request really began to arrive, for ``started_at``, and how sure that is (``start_bound_ms``).

``request.timestamp_start`` is taken when mitmproxy *parses* the request head: on a new connection that is well
after the bytes arrived (the kernel completes the handshake and queues the request; mitmproxy accepts, reads,
chooses a layer and only then parses) — 5–25 ms later when 16 new connections come in together. So, best first:

1. **The kernel's receive stamp** of the connection's first segment (kernel_stamps.py), peeked in the
   ``client_connected`` hook before mitmproxy reads it: exact (bound ``STAMP_BOUND_MS``). Works when the bytes are
   already queued then — under a burst, always.
2. **TCP_INFO's last-data-received** when the data was first read (``next_layer``) — or, for a later request on a
   kept-alive connection, when its head is parsed: one kernel tick (``TCP_INFO_BOUND_MS``) either way.
3. **mitmproxy's own stamps** (no bound: ``start_bound_ms`` is None): over TLS the handshake's end; else the first
   read less at most ``CREDIT_S``, never before the accept; later requests the parse time.

Whatever the source, ``started_at`` is never later than mitmproxy's parse time.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from typing import Any

from analyzer.recorder import kernel_stamps

logger = logging.getLogger(__name__)
METADATA_KEY = "ollama_wire_first_bytes_at"
KERNEL_KEY = "ollama_wire_kernel_start"  # (time, bound_ms) from the kernel, for this flow's request
# How much earlier than mitmproxy read them a connection's first bytes may be taken to have arrived (fallback 3).
CREDIT_S = 0.001
MAX_TRACKED = 65536  # connections whose first bytes were seen but no request yet (bounded)


class ArrivalClock:
    """Notes when each client connection's first bytes arrived; hands that time to its first request."""

    def __init__(self) -> None:
        self._first_bytes: OrderedDict[str, float] = OrderedDict()
        self._kernel: OrderedDict[str, tuple[float, float]] = OrderedDict()
        self._stamped: set[str] = set()
        self.kernel = kernel_stamps.enable()  # False where the kernel cannot stamp (not Linux, no permission)

    def client_connected(self, client: Any) -> None:
        """Before mitmproxy reads anything: peek the kernel's stamp of the first queued segment, if any."""
        if not self.kernel:
            return
        sock = kernel_stamps.client_socket(client)
        if sock is None:
            return
        try:
            stamp = kernel_stamps.first_segment_stamp(sock)
        finally:
            kernel_stamps.release(sock)
        if stamp is not None:
            self._remember(self._kernel, client.id, (stamp, kernel_stamps.STAMP_BOUND_MS))

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
        now = time.time()
        self._remember(self._first_bytes, key, now)
        if self.kernel and key not in self._kernel:  # nothing was queued at connect: the kernel's tick clock
            at = self._last_data_received(client, now)
            if at is not None:
                self._remember(self._kernel, key, (at, kernel_stamps.TCP_INFO_BOUND_MS))

    def requestheaders(self, flow: Any) -> None:
        """The connection's first request takes the noted times (once); a later one asks TCP_INFO now."""
        key = flow.client_conn.id
        at = self._first_bytes.pop(key, None)
        if at is not None:
            flow.metadata[METADATA_KEY] = at
        kernel = self._kernel.pop(key, None)
        if kernel is None and at is None and self.kernel:  # a later request on a kept-alive connection
            received = self._last_data_received(flow.client_conn, time.time())
            if received is not None:
                kernel = (received, kernel_stamps.TCP_INFO_BOUND_MS)
        if kernel is not None:
            flow.metadata[KERNEL_KEY] = kernel

    def client_disconnected(self, client: Any) -> None:
        self._first_bytes.pop(client.id, None)
        self._kernel.pop(client.id, None)
        self._stamped.discard(client.id)

    @staticmethod
    def _last_data_received(client: Any, now: float) -> float | None:
        sock = kernel_stamps.client_socket(client)
        if sock is None:
            return None
        try:
            return kernel_stamps.last_data_received(sock, now)
        finally:
            kernel_stamps.release(sock)

    def _remember(self, table: OrderedDict, key: str, value: Any) -> None:
        table[key] = value
        if len(table) > MAX_TRACKED:
            old, _ = table.popitem(last=False)
            self._stamped.discard(old)

    @staticmethod
    def started_at(flow: Any) -> tuple[float, float | None]:
        """When the request began to arrive, and the bound in ms (None: mitmproxy's stamps, no bound known).

        Never later than mitmproxy's head-parse time. See the module docstring for the sources."""
        parsed = float(flow.request.timestamp_start)
        kernel = flow.metadata.get(KERNEL_KEY)
        conn = flow.client_conn
        tls_done = getattr(conn, "timestamp_tls_setup", None)
        if kernel is not None and tls_done is None:
            at, bound = kernel
            # TCP_INFO counts in ticks: its estimate may fall after the parse, which the true arrival cannot
            return min(float(at), parsed), float(bound)
        first = flow.metadata.get(METADATA_KEY)
        if first is None:
            return parsed, None
        if tls_done is not None:
            return min(float(tls_done), parsed), None
        start = float(first) - CREDIT_S
        opened = getattr(conn, "timestamp_start", None)
        if opened is not None and opened > start:
            start = float(opened)
        return min(start, parsed), None
