"""The sources layer: records from whatever the user names on a reading command's command line.

Owns turning SOURCE arguments — interaction-log directories, JSONL and CSV files this project wrote, packet
captures (analyzed on the fly with the same engine as ``analyze-pcap``) — into one stream of records, plus the
time/model filters (``read_sources``). ``report``, ``findings`` and ``export`` read through it. May import
``analyzer.protocol``, ``analyzer.store`` and ``analyzer.pcap``.
"""

from analyzer.sources.read import SourceError, iter_source_records, read_sources

__all__ = ["SourceError", "iter_source_records", "read_sources"]
