"""Turn one HTTP exchange with Ollama, fed piece by piece with arrival times, into an InteractionRecord.

The same builder serves the mitmproxy addon (fed from hooks and the stream callable) and the pcap
analyzer (fed from reassembled TCP segments). Times are POSIX seconds (float). Body bytes are the
de-chunked HTTP body in any fragmentation; the builder never assumes a fragment is a whole line.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from analyzer.record import InteractionRecord

DEFAULT_MAX_TEXT_BYTES = 4 * 1024 * 1024


class InteractionBuilder:
    """Incrementally builds one :class:`InteractionRecord`.

    Call order: ``request_started`` → ``request_body``* → ``response_started`` → ``response_body``* →
    ``finish``. Any step may be missing (a capture window cuts an exchange); ``finish`` always
    returns a record. Methods never raise on bad traffic: problems become ``flags``.
    """

    def __init__(
        self,
        *,
        source: str,
        client: str = "",
        server: str = "",
        record_id: str = "",
        max_text_bytes: int = DEFAULT_MAX_TEXT_BYTES,
    ) -> None:
        raise NotImplementedError

    def request_started(self, at: float, method: str, path: str, headers: Mapping[str, str]) -> None:
        """The request line and headers; ``at`` is the time of the first request byte."""
        raise NotImplementedError

    def request_body(self, data: bytes, at: float) -> None:
        """A fragment of the (de-chunked) request body."""
        raise NotImplementedError

    def response_started(
        self,
        at: float,
        status: int | None,
        headers: Mapping[str, str] | None,
        *,
        mid_response: bool = False,
    ) -> None:
        """Status line and headers; ``at`` is the time of the first response byte.

        ``mid_response=True`` (pcap only): the capture began inside the response body, so
        ``status``/``headers`` are unknown (pass ``None``); the builder sniffs NDJSON vs SSE vs JSON
        and discards bytes up to the first line/event boundary before parsing.
        """
        raise NotImplementedError

    def response_body(self, data: bytes, at: float) -> None:
        """A fragment of the de-chunked response body, as it arrived at ``at``."""
        raise NotImplementedError

    def add_flags(self, flags: Iterable[str]) -> None:
        """Attach flags found by the producer (e.g. gap_in_capture, client_aborted)."""
        raise NotImplementedError

    def finish(self, at: float | None = None, *, error: str | None = None) -> InteractionRecord:
        """Close the exchange (``at`` = time of the last response byte or of the abort) and build the record."""
        raise NotImplementedError
