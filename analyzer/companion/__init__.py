"""The companion layer: the process beside mitmdump that runs every feed, off the traffic path.

mitmdump only records (recorder/); the companion (process.py, ``python -m analyzer.companion``) takes finished
records and live start/progress events over a private pipe (wire.py), fills the resource columns from its
samplers (resource_feed.py), writes the log, serves the live feed and exports OTLP/Prometheus. feeds.py is the one
table of the feeds' ``ollama_*`` options and their checks, read by the recorder to declare them. May import
``analyzer.protocol``, ``analyzer.store`` and the feeds it runs: ``analyzer.live``, ``analyzer.export``,
``analyzer.resources``.
"""
