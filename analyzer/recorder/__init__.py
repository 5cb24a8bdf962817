"""The recorder layer: the mitmproxy addon and the ``mitmdump`` process that hosts it.

Owns the addon (addon.py: which flows count, the pass-through stream callable, every ``ollama_*`` option), when a
request really arrived (arrival.py), the link to the feeds' companion process (companion_link.py: start,
supervise, hand over records without waiting), the script mitmproxy loads from an installed package
(mitmproxy_script.py), the mitmdump child-process runner (process.py, used by ``ollama-wire demo``, tests and
benchmarks) and the foreground proxy of ``ollama-wire proxy`` (foreground.py). The only layer that imports
mitmproxy. May import ``analyzer.protocol``, ``analyzer.store``, ``analyzer.companion`` (the feeds' options and
its wire format) and ``analyzer.live`` (the live feed's sizes and pace).
"""
