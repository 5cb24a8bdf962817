"""A deterministic work counter for the "bounded work" properties: Python lines executed in the package.

No timed assertion: a loop that spins without consuming input shows up as a line count far beyond a
per-byte bound, whatever the machine's speed.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any, TypeVar

import analyzer

PACKAGE = str(Path(analyzer.__file__).resolve().parent)
T = TypeVar("T")


class StepLimitExceeded(Exception):
    """The code under test executed more lines than its bound."""


def count_lines(fn: Callable[[], T], limit: int) -> tuple[T, int]:
    """Run ``fn`` counting executed lines of the ``analyzer`` package; raise past ``limit``."""
    count = 0
    ours: dict[str, bool] = {}

    def local(frame: FrameType, event: str, arg: Any) -> Any:
        nonlocal count
        if event == "line":
            count += 1
            if count > limit:
                raise StepLimitExceeded(f"more than {limit} lines executed")
        return local

    def tracer(frame: FrameType, event: str, arg: Any) -> Any:
        filename = frame.f_code.co_filename
        mine = ours.get(filename)
        if mine is None:
            mine = ours[filename] = filename.startswith(PACKAGE)
        return local if mine else None

    previous = sys.gettrace()
    sys.settrace(tracer)
    try:
        result = fn()
    finally:
        sys.settrace(previous)
    return result, count
