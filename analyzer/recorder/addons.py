"""The addons mitmproxy loads, wired to one observer hub: the recorder first, then the feeds that watch it."""

from __future__ import annotations

from analyzer.protocol.observer import ObserverHub
from analyzer.recorder import export_addon
from analyzer.recorder.addon import OllamaLog


def build_addons() -> list[object]:
    """A fresh set of addons for one mitmproxy script load (``addons = build_addons()``).

    Each feed (live events, export, resource sampling) is its own addon with its own ``ollama_*`` options
    and adds itself to the hub the recorder reports to. Feeds come before the recorder: their options must be
    declared when the recorder's ``load`` applies the deferred ``--set ollama_*`` values.
    """
    hub = ObserverHub()
    return [export_addon.OllamaExport(hub), OllamaLog(hub, option_checks=[export_addon.option_problem])]
