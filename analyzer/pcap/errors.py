"""Errors raised while reading capture files. Every message names the file and the problem."""

from __future__ import annotations


class CaptureError(Exception):
    """Base class: a capture file cannot be analyzed."""

    def __init__(self, path: str, problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path = path
        self.problem = problem


class EmptyCaptureError(CaptureError):
    """The file has no bytes (e.g. tcpdump was killed before writing its header)."""

    def __init__(self, path: str) -> None:
        super().__init__(path, "empty file (0 bytes): tcpdump may have been stopped before it wrote anything")


class NotACaptureError(CaptureError):
    """The file is neither pcap nor pcapng."""

    def __init__(self, path: str, magic: bytes) -> None:
        super().__init__(path, f"not a pcap or pcapng capture file (starts with {magic[:8].hex(' ')})")


class CorruptCaptureError(CaptureError):
    """A block or record header makes no sense (not just a cut-short last packet)."""


class UnsupportedLinkTypeError(CaptureError):
    """The capture's link-layer type is one the fast engine does not decode."""

    def __init__(self, path: str, linktype: int, name: str) -> None:
        super().__init__(
            path,
            f"unsupported link type {linktype} ({name}); try --engine tshark",
        )
        self.linktype = linktype


class NotARegularFileError(CaptureError):
    """A FIFO, device or socket given as a capture: reading it could block or never end."""

    def __init__(self, path: str) -> None:
        super().__init__(path, "not a regular file (a FIFO, device or socket); captures are read from files")
