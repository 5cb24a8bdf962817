"""The report layer: records → answers. Derived timings, findings with stable codes, headline numbers, and the
self-contained HTML page of ``ollama-wire report``.

Owns the questions a user asks the morning after: what went wrong, why was it slow, what to change.
``derive`` computes what Ollama does not report (hidden wait, wire overhead), ``findings`` turns records into
findings (code, severity, evidence ids, suggestion; thresholds are named constants there), ``headline`` the
summary numbers, ``page`` the HTML (plotly.js inlined once). May import ``analyzer.protocol``,
``analyzer.store``, ``analyzer.pcap``, ``analyzer.sources`` and ``analyzer.resources``; never click.
"""

from analyzer.report.analysis import Analysis, analyze

__all__ = ["Analysis", "analyze"]
