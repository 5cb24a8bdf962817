"""The addons mitmproxy loads, wired to one observer hub: the feeds that watch the recorder, then the recorder."""

from __future__ import annotations

from analyzer.protocol.observer import ObserverHub
from analyzer.recorder import export_addon, live_addon, resources_addon
from analyzer.recorder.addon import OllamaLog
from analyzer.recorder.live_addon import LiveFeed
from analyzer.recorder.resources_addon import ResourcesAddon


def build_addons() -> list[object]:
    """A fresh set of addons for one mitmproxy script load (``addons = build_addons()``).

    Each feed (live events, export, resource sampling) is its own addon with its own ``ollama_*`` options
    and adds itself to the hub the recorder reports to. Feeds come before the recorder: their options must be
    declared when the recorder's ``load`` applies the deferred ``--set ollama_*`` values, which it checks with
    each feed's ``option_problem`` so a bad value is one error line at start-up, not a silently unloaded script.
    """
    hub = ObserverHub()
    checks = [live_addon.option_problem, export_addon.option_problem, resources_addon.option_problem]
    recorder = OllamaLog(hub, option_checks=checks)
    return [LiveFeed(hub, recorder), export_addon.OllamaExport(hub), ResourcesAddon(hub), recorder]
