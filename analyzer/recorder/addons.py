"""The addons mitmproxy loads: the recorder alone (the feeds run in its companion process)."""

from __future__ import annotations

from analyzer.recorder.addon import OllamaLog


def build_addons() -> list[object]:
    """A fresh set of addons for one mitmproxy script load (``addons = build_addons()``).

    Only the recorder: it declares every ``ollama_*`` option — its own and the feeds' (companion/feeds.py) —
    checks them in one place, and starts the feeds' companion process when the proxy runs.
    """
    return [OllamaLog()]
