"""Helpers for the live-feed tests: a short socket directory and a real builder fed like the addon feeds it."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture
def sock_path() -> Iterator[Path]:
    """A socket path short enough for AF_UNIX (pytest's tmp_path can exceed 100 bytes)."""
    directory = Path(tempfile.mkdtemp(prefix="live-"))
    yield directory / "live.sock"
    shutil.rmtree(directory, ignore_errors=True)
