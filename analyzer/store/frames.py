"""pandas entry point for notebooks: the interaction log as a DataFrame (record columns)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from analyzer.store.log import DEFAULT_LOG_DIR, read_log
from analyzer.store.tables import records_to_frame


def load_log(log_dir: Path | str = DEFAULT_LOG_DIR) -> pd.DataFrame:
    """Every record of the interaction log (the addon's JSONL files), one row each, record columns."""
    return records_to_frame(read_log(log_dir))
