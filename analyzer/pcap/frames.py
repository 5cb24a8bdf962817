"""pandas entry point for notebooks: one capture file as a DataFrame with the log's columns."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from analyzer.pcap.analyze import DEFAULT_PORTS, AnalyzeOptions, analyze_capture
from analyzer.pcap.errors import CaptureError
from analyzer.store.tables import records_to_frame


def read_capture(path: Path | str, *, ports: tuple[int, ...] = DEFAULT_PORTS, engine: str = "auto") -> pd.DataFrame:
    """The Ollama interactions in one pcap/pcapng file, one row each, the same columns as ``load_log``.

    Raises :class:`analyzer.pcap.errors.CaptureError` (message names the file and the problem).
    """
    result = analyze_capture(Path(path), AnalyzeOptions(ports=ports, engine=engine))
    if result.error:
        raise CaptureError(str(path), result.error.removeprefix(f"{path}: "))
    return records_to_frame(result.records)
