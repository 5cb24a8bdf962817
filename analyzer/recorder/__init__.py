"""The recorder layer: the mitmproxy addon and the ``mitmdump`` process that hosts it.

Owns the addon (addon.py: which flows count, the pass-through stream callable, options), the script mitmproxy
loads from an installed package (mitmproxy_script.py), the mitmdump child-process runner (process.py, used by
``ollama-wire demo``, tests and benchmarks) and the foreground proxy of ``ollama-wire proxy`` (foreground.py).
The only layer that imports mitmproxy. May import ``analyzer.protocol``, ``analyzer.store`` and the feeds the
addon drives: ``analyzer.live``, ``analyzer.export``, ``analyzer.resources``.
"""
