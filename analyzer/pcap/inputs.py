"""Which files a list of PATH arguments means: files, directories and globs, sorted by capture time."""

from __future__ import annotations

import glob
import stat
from collections.abc import Callable, Iterable
from pathlib import Path

from analyzer.pcap.captures import first_packet_time
from analyzer.pcap.errors import CaptureError

CAPTURE_SUFFIXES = (".pcap", ".pcapng", ".cap", ".dmp")


class InputError(Exception):
    """A PATH argument that names nothing usable."""


def not_regular_problem(path: Path) -> str | None:
    """Why ``path`` cannot be read as a capture file without blocking (a FIFO, a device, a socket), or None."""
    try:
        mode = path.stat().st_mode
    except OSError:
        return None  # reported by whoever opens it
    if stat.S_ISREG(mode):
        return None
    kind = (
        "a FIFO" if stat.S_ISFIFO(mode) else "a character device" if stat.S_ISCHR(mode)
        else "a block device" if stat.S_ISBLK(mode) else "a socket" if stat.S_ISSOCK(mode) else "not a file"
    )  # fmt: skip
    return f"{path}: not a regular file ({kind}); captures are read from files"


def expand_paths(arguments: Iterable[str], *, on_error: Callable[[str], None] | None = None) -> list[Path]:
    """Files named directly, capture files inside directories (not recursive), and glob matches; no repeats.

    An argument that names nothing usable (a missing path, a glob without matches, a directory without
    capture files) raises :class:`InputError`, or, when ``on_error`` is given, is reported to it as one
    message naming the argument and skipped, so the other arguments are still expanded.
    """

    def problem(message: str) -> None:
        if on_error is None:
            raise InputError(message)
        on_error(message)

    found: dict[Path, None] = {}
    for argument in arguments:
        path = Path(argument)
        if path.is_dir():
            try:
                children = [c for c in sorted(path.iterdir()) if c.is_file() and c.suffix.lower() in CAPTURE_SUFFIXES]
            except OSError as exc:
                problem(f"{argument}: cannot read directory: {exc.strerror or exc}")
                continue
            if not children:
                problem(f"{argument}: no capture files ({', '.join(CAPTURE_SUFFIXES)})")
            found.update(dict.fromkeys(children))
        elif path.exists():
            problem_text = not_regular_problem(path)
            if problem_text is not None:
                problem(problem_text)
                continue
            found[path] = None
        elif glob.has_magic(argument):
            matches = sorted(Path(m) for m in glob.glob(argument) if Path(m).is_file())
            if not matches:
                problem(f"{argument}: no such file or directory (no files match)")
            found.update(dict.fromkeys(matches))
        else:
            problem(f"{argument}: no such file or directory")
    return list(found)


def sort_by_capture_time(paths: Iterable[Path]) -> list[Path]:
    """Oldest capture first, by the first packet's timestamp; unreadable files last, by name."""

    def key(path: Path) -> tuple[int, float, str]:
        try:
            first = first_packet_time(str(path))
        except (CaptureError, OSError):
            first = None
        return (0, first, str(path)) if first is not None else (1, 0.0, str(path))

    return sorted(paths, key=key)
