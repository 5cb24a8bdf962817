"""Desktop notifications and the terminal bell for errors, stalls and aborts, rate-limited."""

from __future__ import annotations

import html
import shutil
import subprocess
import sys
import time

from analyzer.protocol.untrusted import terminal_cell

MIN_INTERVAL_S = 30.0  # at most one notification per this many seconds; the rest are summed into the next


def notifier() -> list[str] | None:
    """The notification command of this desktop (``notify-send`` on Linux, ``osascript`` on macOS), if any."""
    if sys.platform == "darwin" and shutil.which("osascript"):
        return ["osascript", "-e"]
    found = shutil.which("notify-send")
    return [found] if found else None


class Alerts:
    """Collects alert lines; ``flush`` sends at most one notification per ``MIN_INTERVAL_S`` summing them."""

    def __init__(self, *, notify: bool, bell: bool, min_interval_s: float = MIN_INTERVAL_S) -> None:
        self.command = notifier() if notify else None
        self.notify = notify
        self.bell = bell
        self.min_interval_s = min_interval_s
        self.pending: list[str] = []
        self.sent = 0
        self._last_sent = 0.0

    @property
    def enabled(self) -> bool:
        return self.notify or self.bell

    def add(self, line: str) -> None:
        """One alert line; it quotes model names, paths and errors from traffic, so it is escaped and cut."""
        if self.enabled:
            self.pending.append(terminal_cell(line, 200))

    def due(self, now: float | None = None) -> bool:
        now = now or time.time()
        return bool(self.pending) and now - self._last_sent >= self.min_interval_s

    def take(self, now: float | None = None) -> tuple[str, str] | None:
        """(title, body) to show now, or None (nothing pending, or too soon after the last one)."""
        now = now or time.time()
        if not self.due(now):
            return None
        lines, self.pending = self.pending, []
        self._last_sent = now
        self.sent += 1
        title = f"ollama-wire: {lines[0]}" if len(lines) == 1 else f"ollama-wire: {len(lines)} alerts"
        body = "\n".join(lines[:5]) + (f"\n… and {len(lines) - 5} more" if len(lines) > 5 else "")
        return title, body

    def send(self, title: str, body: str) -> None:
        """Show a desktop notification (best effort, never blocks the dashboard for long)."""
        if self.command is None:
            return
        if self.command[0] == "osascript":
            script = f"display notification {_applescript(body)} with title {_applescript(title)}"
            argv = [*self.command, script]
        else:
            # notify-send bodies are markup (<b>, <a href>): traffic text is shown as text
            argv = [*self.command, "--app-name=ollama-wire", title, html.escape(body, quote=False)]
        try:
            subprocess.run(argv, timeout=5, check=False, capture_output=True)
        except (OSError, subprocess.SubprocessError):
            self.command = None  # do not try again every 30 s


def _applescript(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
