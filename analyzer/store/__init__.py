"""The store layer: records at rest.

Owns the append-only JSONL interaction log (log.py; read from its end by tail.py, summarised fast and cached
per day by digest.py), the table writers — CSV, JSONL, JSON, SQLite, text
tables, per-model summaries (tables.py) — the one-line console summary (summary.py) and the log as a pandas
DataFrame (frames.py). May import ``analyzer.protocol`` only.
"""
