"""Interaction events for whoever watches records being made: the live feed, exporters, resource samplers.

The feeds' companion process (analyzer/companion) calls an :class:`ObserverHub` at four points of every interaction
the proxy reports: started, progressed (coalesced), enrich and finished. Observers share the companion's event loop
with the live feed and the record writer, so each call must be O(1) and non-blocking: take what you need
and hand it to your own bounded queue or thread; drop (and count) rather than wait. An observer that raises is
counted and skipped; the traffic and the other observers go on.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from analyzer.protocol.interaction import InteractionBuilder
    from analyzer.protocol.record import InteractionRecord

logger = logging.getLogger(__name__)


class InteractionObserver(Protocol):
    """What an observer implements (all four; a no-op body is fine)."""

    def interaction_started(self, builder: InteractionBuilder) -> None:
        """The request is known (method, path, body) — no response yet."""

    def interaction_progressed(self, builder: InteractionBuilder) -> None:
        """A response fragment was just fed to ``builder`` (called per fragment: coalesce yourself)."""

    def enrich_record(self, record: InteractionRecord) -> None:
        """Fill the columns this observer owns in the final record (the resource feed fills the resource columns).

        Called before ``interaction_finished`` and before the record is written; in memory, never blocking."""

    def interaction_finished(self, record: InteractionRecord) -> None:
        """The final record, after redaction and enrichment, just before it is written to the log."""


class ObserverHub:
    """Fans interaction events out to observers, isolating each one's failures."""

    def __init__(self) -> None:
        self.observers: list[InteractionObserver] = []
        self.failures = 0

    def add(self, observer: InteractionObserver) -> None:
        if observer not in self.observers:
            self.observers.append(observer)

    def remove(self, observer: InteractionObserver) -> None:
        if observer in self.observers:
            self.observers.remove(observer)

    def started(self, builder: InteractionBuilder) -> None:
        for observer in self.observers:
            try:
                observer.interaction_started(builder)
            except Exception:
                self._failed(observer)

    def progressed(self, builder: InteractionBuilder) -> None:
        for observer in self.observers:
            try:
                observer.interaction_progressed(builder)
            except Exception:
                self._failed(observer)

    def enrich(self, record: InteractionRecord) -> None:
        """Let every observer fill the columns it owns in ``record`` before it is written."""
        for observer in self.observers:
            try:
                observer.enrich_record(record)
            except Exception:
                self._failed(observer)

    def finished(self, record: InteractionRecord) -> None:
        for observer in self.observers:
            try:
                observer.interaction_finished(record)
            except Exception:
                self._failed(observer)

    def _failed(self, observer: InteractionObserver) -> None:
        self.failures += 1
        if self.failures == 1 or self.failures % 1000 == 0:
            logger.warning(
                "observer %s failed (%d failures so far)", type(observer).__name__, self.failures, exc_info=True
            )
