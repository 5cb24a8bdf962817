"""The replay layer: send recorded requests again to another server, and compare the two runs.

Owns choosing what can be replayed and planning the arrival pattern (plan.py), the HTTP/1.1 client that feeds
the same ``InteractionBuilder`` the recorder uses with its own bytes and timestamps (client.py), running a plan
with its speed, concurrency, progress and clean stop (run.py), and pairing replayed records with their originals
into a before/after comparison (compare.py) with its page (compare_page.py). May import ``analyzer.protocol``,
``analyzer.store``, ``analyzer.pcap``, ``analyzer.sources``, ``analyzer.resources`` and ``analyzer.report``.
"""
