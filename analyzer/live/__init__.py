"""The live layer: what the recorder is doing right now, published as NDJSON events on a local socket.

Owns the event model (``events``: ``hello``/``start``/``progress``/``end``/``dropped``, docs/live.md), the default
socket location (``paths``), the publisher the mitmproxy addon drives (``publisher``: an interaction observer
plus a Unix-socket server, coalesced and non-blocking) and the subscriber client ``ollama-wire top`` uses
(``subscriber``). It imports the protocol layer (builder, record, redaction) and may import store and resources;
it never imports mitmproxy — it runs in the feeds' companion process (``analyzer/companion``), fed by the recorder.
"""
