"""The ledger of captures already analyzed into an interaction log, keyed by content hash.

A rerun over a growing capture directory skips every file whose bytes were analyzed before, even if
it was renamed or moved. The ledger lives beside the log (``<log_dir>/.captures-ledger.jsonl``);
appends are locked so the capture runner and a manual run can share it.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
from datetime import UTC, datetime
from pathlib import Path

LEDGER_NAME = ".captures-ledger.jsonl"


def content_hash(path: Path, block_size: int = 1 << 20) -> str:
    """sha256 of the file's bytes, read in blocks (memory stays flat)."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(block_size):
            digest.update(block)
    return digest.hexdigest()


class Ledger:
    def __init__(self, log_dir: Path) -> None:
        self.path = Path(log_dir) / LEDGER_NAME

    def analyzed(self) -> set[str]:
        """Content hashes already analyzed into this log."""
        if not self.path.exists():
            return set()
        hashes = set()
        with self.path.open(encoding="utf-8", errors="replace") as fh:
            for line in fh:
                try:
                    hashes.add(json.loads(line)["sha256"])
                except (ValueError, KeyError, TypeError):
                    continue
        return hashes

    def add(self, sha256: str, path: Path, records: int) -> None:
        """Note that ``path`` (with this content hash) was analyzed and gave ``records`` records."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        entry = {
            "sha256": sha256,
            "path": str(path),
            "records": records,
            "analyzed_at": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        with os.fdopen(fd, "a", encoding="utf-8") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            fh.write(json.dumps(entry) + "\n")
