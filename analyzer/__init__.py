"""ollama-wire as a library, for notebooks and scripts.

    from analyzer import load_log, read_capture
    frame = load_log("logs/ollama_interactions")

Names resolve lazily (module ``__getattr__``), so importing one layer — as the mitmproxy addon imports
``analyzer.recorder`` — does not pull in pandas or the packet engines. The layers below, imports pointing
downward only (``tests/test_layers.py`` keeps it so):

    cli                         click commands
    recorder                    the mitmproxy addon and the mitmdump runner
    report  live  export        the insight layer (own folders, own docstrings)
    sources                     SOURCE arguments → records
    pcap   resources            captures → records; machine samplers
    store  emulator             records at rest; the stand-in Ollama
    protocol                    the record and the one builder
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from analyzer.pcap.analyze import AnalyzeOptions, CaptureResult, analyze_capture, iter_capture
    from analyzer.pcap.errors import CaptureError
    from analyzer.pcap.frames import read_capture
    from analyzer.protocol.interaction import InteractionBuilder
    from analyzer.protocol.record import COLUMNS, InteractionRecord
    from analyzer.sources import SourceError, read_sources
    from analyzer.store.frames import load_log
    from analyzer.store.log import InteractionLog, LogError, read_log
    from analyzer.store.tables import records_to_frame

_EXPORTS: dict[str, str] = {
    "AnalyzeOptions": "analyzer.pcap.analyze",
    "CaptureResult": "analyzer.pcap.analyze",
    "analyze_capture": "analyzer.pcap.analyze",
    "iter_capture": "analyzer.pcap.analyze",
    "CaptureError": "analyzer.pcap.errors",
    "read_capture": "analyzer.pcap.frames",
    "InteractionBuilder": "analyzer.protocol.interaction",
    "COLUMNS": "analyzer.protocol.record",
    "InteractionRecord": "analyzer.protocol.record",
    "SourceError": "analyzer.sources",
    "read_sources": "analyzer.sources",
    "load_log": "analyzer.store.frames",
    "InteractionLog": "analyzer.store.log",
    "LogError": "analyzer.store.log",
    "read_log": "analyzer.store.log",
    "records_to_frame": "analyzer.store.tables",
}

__all__ = [
    "COLUMNS",
    "AnalyzeOptions",
    "CaptureError",
    "CaptureResult",
    "InteractionBuilder",
    "InteractionLog",
    "InteractionRecord",
    "LogError",
    "SourceError",
    "analyze_capture",
    "iter_capture",
    "load_log",
    "read_capture",
    "read_log",
    "read_sources",
    "records_to_frame",
]
assert sorted(__all__) == sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'analyzer' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
