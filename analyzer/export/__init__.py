"""The export layer: interaction records as OpenTelemetry GenAI spans and metrics, over OTLP/HTTP and Prometheus.

Owns the mapping from an :class:`~analyzer.protocol.record.InteractionRecord` to the GenAI semantic conventions
(``semconv`` keeps the convention version and every name in one place; ``mapping`` is pure record → span
attributes, events and measurements), the OpenTelemetry SDK set-up (``telemetry``: providers, views with the
convention's bucket boundaries, exporters that count what they could not deliver), the observer the recorder
addon hands interactions to (``observer``: a bounded queue and one worker thread, off the traffic path), and
the replay of stored records with their original timestamps (``replay``). ``settings`` checks URLs and listen
addresses without loading the SDK (mitmdump starts as fast with export off). May import ``analyzer.protocol``,
``analyzer.store``, ``analyzer.sources`` and ``analyzer.resources``; never mitmproxy or click.
"""
