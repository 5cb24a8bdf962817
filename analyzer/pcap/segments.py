"""The one segment stream every packet source produces and TCP reassembly consumes."""

from __future__ import annotations

from dataclasses import dataclass

# TCP flag bits, as in the TCP header.
FIN = 0x01
SYN = 0x02
RST = 0x04
PSH = 0x08
ACK = 0x10


@dataclass(slots=True)
class TcpSegment:
    """One captured TCP segment. ``ts`` is the packet's capture time in POSIX seconds.

    Addresses are text (``"127.0.0.1"``, ``"::1"``); ``payload`` is the TCP payload as captured
    (may be shorter than on the wire if the snap length cut it: then ``truncated`` is True).
    """

    ts: float
    src: str
    sport: int
    dst: str
    dport: int
    seq: int
    ack: int
    flags: int
    payload: bytes
    truncated: bool = False
