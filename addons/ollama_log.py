"""Record every Ollama interaction that passes through mitmproxy, without slowing the stream.

    mitmdump --mode reverse:http://127.0.0.1:11434@127.0.0.1:11435 -s addons/ollama_log.py

The logic lives in the installed package (``analyzer.recorder.addon``); this file is what ``-s`` loads in a
checkout. From an installed package use ``ollama-wire proxy`` or ``mitmdump -s "$(ollama-wire addon-path)"``.
"""

from analyzer.recorder.addons import build_addons

addons = build_addons()
