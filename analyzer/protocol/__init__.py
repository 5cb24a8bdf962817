"""The protocol layer: the record contract and the one builder that makes records.

Owns ``InteractionRecord`` (record.py, the columns every part of ollama-wire writes), the incremental
``InteractionBuilder`` (interaction.py) and what it is made of: one response body reader per Content-Type
(body_readers.py), NDJSON/SSE splitting (framing.py), endpoint
classification (endpoints.py), request and response body parsing (request_content.py, response_content.py),
inter-token timing (timing.py), redaction (redact.py), and how every view shows text that came from traffic
(untrusted.py: terminal escaping, table cells, spreadsheet-safe CSV cells). Imports nothing else of
``analyzer``, and neither mitmproxy nor click: the proxy addon and both packet engines feed bytes and
timestamps into the same builder.
"""
