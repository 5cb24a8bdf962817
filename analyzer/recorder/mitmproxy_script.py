"""The script mitmproxy loads from an installed package: ``mitmdump -s "$(ollama-wire addon-path)"``."""

from analyzer.recorder.addons import build_addons

addons = build_addons()
