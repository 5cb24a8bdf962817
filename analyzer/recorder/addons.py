"""The addons mitmproxy loads, wired to one observer hub: the recorder and the feeds that watch it."""

from __future__ import annotations

from analyzer.protocol.observer import ObserverHub
from analyzer.recorder.addon import OllamaLog
from analyzer.recorder.resources_addon import ResourcesAddon


def build_addons() -> list[object]:
    """A fresh set of addons for one mitmproxy script load (``addons = build_addons()``).

    Each feed (live events, export, resource sampling) is its own addon with its own ``ollama_*`` options
    and adds itself to the hub the recorder reports to.
    Feeds with ``ollama_*`` options come before the recorder, so their options are declared when the recorder
    checks every ``--set ollama_*`` name at load.
    """
    hub = ObserverHub()
    return [ResourcesAddon(hub), OllamaLog(hub)]
