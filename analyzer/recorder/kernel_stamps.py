"""When the kernel received a connection's bytes: software receive timestamps and ``TCP_INFO`` (Linux).

mitmproxy stamps a connection when its event loop gets to it — 5–25 ms after the bytes arrived when a burst of
new connections comes in together. The kernel knows better:

* **Receive timestamps** (exact): with software RX timestamping enabled anywhere in the system (one socket of
  ours holds it on: :func:`enable`), every incoming segment is stamped when it enters the network stack. Turning
  ``SO_TIMESTAMPING`` on for an accepted socket and peeking (``MSG_PEEK``) one byte returns the stamp of its first
  queued segment — the first request byte — before mitmproxy reads it. Measured here: within 0.05 ms of the
  client's ``send``. This needs the data to be queued when the ``client_connected`` hook runs, which is exactly the
  case under a burst (the hook runs late); on an idle proxy it may run before the client sent anything.
* ``TCP_INFO`` (coarse): ``tcpi_last_data_recv`` is the time since the last segment arrived, in jiffies
  (``CONFIG_HZ``; 4 ms here): read when the first data was read, or when a later request's head is parsed.

macOS (untested here) has neither ``SO_TIMESTAMPING`` nor ``tcpi_last_data_recv``; ``SO_TIMESTAMP`` with
``MSG_PEEK`` may give the same exact stamp there. Every function returns None where it does not work, and the
recorder falls back to its own stamps (recorder/arrival.py) with no bound.
"""

from __future__ import annotations

import contextlib
import gzip
import socket
import struct
import sys
import time
from typing import Any

SO_TIMESTAMPING = getattr(socket, "SO_TIMESTAMPING", 37)  # Linux; == SCM_TIMESTAMPING
SOF_TIMESTAMPING_RX_SOFTWARE = 1 << 3
SOF_TIMESTAMPING_SOFTWARE = 1 << 4
RX_FLAGS = SOF_TIMESTAMPING_RX_SOFTWARE | SOF_TIMESTAMPING_SOFTWARE
SCM_SPACE = socket.CMSG_SPACE(48) if hasattr(socket, "CMSG_SPACE") else 0  # struct scm_timestamping: 3 timespecs
TCP_INFO = getattr(socket, "TCP_INFO", None)
LAST_DATA_RECV_OFFSET = 52  # struct tcp_info: 8 bytes of u8 fields, then u32s; tcpi_last_data_recv is the 12th
STAMP_BOUND_MS = 0.5  # a receive stamp vs the segment's arrival: µs measured; stated with room
TLS_HANDSHAKE = 0x16  # the first byte of a TLS ClientHello: the stamp would be the handshake's, not the request's

_holder: socket.socket | None = None


def enable() -> bool:
    """Turn on software receive timestamping for the system's incoming segments (held while the proxy runs)."""
    global _holder
    if _holder is not None:
        return True
    if not sys.platform.startswith("linux") or not SCM_SPACE:
        return False
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        probe.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPING, RX_FLAGS)
    except OSError:
        probe.close()
        return False
    _holder = probe
    return True


def _jiffy_ms() -> float:
    """One kernel tick in ms (``CONFIG_HZ`` from /proc/config.gz; 10 ms — HZ=100, the coarsest — when unknown)."""
    with contextlib.suppress(OSError, EOFError, ValueError), gzip.open("/proc/config.gz", "rt") as config:
        for line in config:
            if line.startswith("CONFIG_HZ="):
                return 1000.0 / int(line.split("=", 1)[1])
    return 10.0


TCP_INFO_BOUND_MS = _jiffy_ms() if sys.platform.startswith("linux") else 10.0


def client_socket(client: Any) -> socket.socket | None:
    """The accepted socket of mitmproxy's ``client`` connection, or None.

    mitmproxy keeps it in its proxy server's connection handlers and offers no hook argument for it; this reads
    that structure (the same on mitmproxy 11 and 12) and gives up quietly when it looks different. The returned
    object wraps the fd without owning it: call :func:`release` when done."""
    from mitmproxy import ctx

    server = ctx.master.addons.get("proxyserver")
    handler = getattr(server, "connections", {}).get(client.id)
    io = getattr(handler, "transports", {}).get(client) if handler is not None else None
    writer = getattr(io, "writer", None)
    transport_socket = writer.get_extra_info("socket") if writer is not None else None
    if transport_socket is None or transport_socket.type != socket.SOCK_STREAM:
        return None
    return socket.socket(transport_socket.family, transport_socket.type, fileno=transport_socket.fileno())


def release(sock: socket.socket) -> None:
    sock.detach()  # the fd stays mitmproxy's


def first_segment_stamp(sock: socket.socket) -> float | None:
    """The receive stamp of the first byte still queued on ``sock`` (not read), or None (nothing queued yet, TLS,
    no stamp). Never blocks."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPING, RX_FLAGS)
        data, ancillary, _flags, _address = sock.recvmsg(1, SCM_SPACE, socket.MSG_PEEK | socket.MSG_DONTWAIT)
    except (BlockingIOError, InterruptedError):
        return None
    except OSError:
        return None
    if not data or data[0] == TLS_HANDSHAKE:
        return None
    for level, kind, payload in ancillary:
        if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPING and len(payload) >= 16:
            seconds, nanoseconds = struct.unpack_from("qq", payload, 0)
            if seconds:
                return seconds + nanoseconds / 1e9
    return None


def last_data_received(sock: socket.socket, now: float | None = None) -> float | None:
    """When the last segment arrived on ``sock`` (``TCP_INFO``, ±``TCP_INFO_BOUND_MS``), or None."""
    if TCP_INFO is None:
        return None
    try:
        info = sock.getsockopt(socket.IPPROTO_TCP, TCP_INFO, LAST_DATA_RECV_OFFSET + 4)
    except OSError:
        return None
    if len(info) < LAST_DATA_RECV_OFFSET + 4:
        return None
    (ago_ms,) = struct.unpack_from("I", info, LAST_DATA_RECV_OFFSET)
    return (now or time.time()) - ago_ms / 1000
