"""The store layer: records at rest.

Owns the append-only JSONL interaction log (log.py), the table writers — CSV, JSONL, JSON, SQLite, text
tables, per-model summaries (tables.py) — the one-line console summary (summary.py) and the log as a pandas
DataFrame (frames.py). May import ``analyzer.protocol`` only.
"""
