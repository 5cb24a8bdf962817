"""The addons mitmproxy loads, wired to one observer hub: the recorder first, then the feeds that watch it."""

from __future__ import annotations

from analyzer.protocol.observer import ObserverHub
from analyzer.recorder.addon import OllamaLog
from analyzer.recorder.resources_addon import OPTION_NAMES as RESOURCES_OPTIONS
from analyzer.recorder.resources_addon import ResourcesAddon


def build_addons() -> list[object]:
    """A fresh set of addons for one mitmproxy script load (``addons = build_addons()``).

    Each feed (live events, export, resource sampling) is its own addon with its own ``ollama_*`` options
    and adds itself to the hub the recorder reports to. The recorder is told the feeds' option names, so it
    leaves their ``--set`` values to them instead of calling them unknown.
    """
    hub = ObserverHub()
    return [OllamaLog(hub, feed_options=RESOURCES_OPTIONS), ResourcesAddon(hub)]
