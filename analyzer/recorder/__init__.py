"""The recorder layer: the mitmproxy addon and the ``mitmdump`` process that hosts it.

Owns the addon (addon.py: which flows count, the pass-through stream callable, options), the script mitmproxy
loads from an installed package (mitmproxy_script.py) and the mitmdump child-process runner (process.py,
used by ``ollama-wire proxy`` and ``demo``). The only layer that imports mitmproxy. May import
``analyzer.protocol``, ``analyzer.store`` and the feeds the addon drives: ``analyzer.live``,
``analyzer.export``, ``analyzer.resources``.
"""
