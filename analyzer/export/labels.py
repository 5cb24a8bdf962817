"""Bounded metric labels: whoever sends a request chooses the model name, so no label may grow without limit.

Every metric attribute whose value comes from traffic (:data:`TRAFFIC_LABELS`: the model, the error type, the
server address) keeps at most ``limit`` distinct values (default :data:`DEFAULT_LABEL_LIMIT`; the addon option
``ollama_label_limit``). The first ``limit`` values seen keep their own series; every later new value is folded
into :data:`OTHER`, and each fold is counted per label (the ``ollama.export.label_values_folded`` counter), so
1,500 distinct model names cost ``limit`` + 1 series per metric, not 1,500, in the proxy's memory and in
Prometheus. Values are also cut to :data:`LABEL_VALUE_WIDTH` characters with their control characters escaped
(``analyzer.protocol.untrusted``): a label is for grouping and for reading on a dashboard; spans keep the exact
text.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping

from analyzer.export import semconv as sc
from analyzer.protocol.untrusted import terminal_cell

DEFAULT_LABEL_LIMIT = 100
LABEL_VALUE_WIDTH = 128
OTHER = "other"
TRAFFIC_LABELS = (sc.REQUEST_MODEL, sc.ERROR_TYPE, sc.SERVER_ADDRESS)

AttributeValue = str | bool | int | float | list[str]


class LabelLimiter:
    """Folds the values of traffic-chosen labels beyond the first ``limit`` per label into ``other``.

    Thread-safe; memory is bounded by ``limit`` values per label whatever the traffic.
    """

    def __init__(self, limit: int = DEFAULT_LABEL_LIMIT, labels: tuple[str, ...] = TRAFFIC_LABELS) -> None:
        if limit < 1:
            raise ValueError(f"the label limit must be at least 1, not {limit}")
        self.limit = limit
        self.labels = labels
        self._lock = threading.Lock()
        self._kept: dict[str, set[str]] = {label: set() for label in labels}
        self.folded: dict[str, int] = {}
        self._sink: Callable[[int, str], None] | None = None

    def attach(self, sink: Callable[[int, str], None]) -> None:
        """Report every fold (count, label) to ``sink`` from now on, and the folds so far at once."""
        with self._lock:
            self._sink = sink
            pending = dict(self.folded)
        for label, count in pending.items():
            sink(count, label)

    def distinct(self, label: str) -> int:
        """How many values of ``label`` have their own series."""
        with self._lock:
            return len(self._kept.get(label, ()))

    def bound(self, attributes: Mapping[str, AttributeValue]) -> dict[str, AttributeValue]:
        """``attributes`` with each traffic label's value cut, escaped and, beyond the limit, folded."""
        out = dict(attributes)
        folded: list[str] = []
        with self._lock:
            for label in self.labels:
                value = out.get(label)
                if not isinstance(value, str):
                    continue
                shown = terminal_cell(value, LABEL_VALUE_WIDTH)
                kept = self._kept[label]
                if shown not in kept:
                    if len(kept) >= self.limit:
                        shown = OTHER
                        self.folded[label] = self.folded.get(label, 0) + 1
                        folded.append(label)
                    else:
                        kept.add(shown)
                out[label] = shown
            sink = self._sink
        if sink is not None:
            for label in folded:
                sink(1, label)
        return out


__all__ = ["DEFAULT_LABEL_LIMIT", "LABEL_VALUE_WIDTH", "OTHER", "TRAFFIC_LABELS", "LabelLimiter"]
