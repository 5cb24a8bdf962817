"""Machine resources per interaction: samplers, the resource timeline, attribution to records, and cost.

Owns the sampler interface (base.py) and its sources — NVIDIA GPUs through NVML (nvidia.py), Apple Silicon
through ``macmon pipe`` or ``powermetrics`` via the capture helper (macmon.py, powermetrics.py), the Ollama server
process (process.py) and Ollama's ``/api/ps`` (ollama_ps.py) — the bounded timeline they fill (timeline.py),
the rule that shares energy and CPU time between overlapping requests (attribution.py) and the prices that
turn records into cost when they are read (cost.py). Each source says clearly when it is unavailable and why.

May import ``analyzer.protocol`` and ``analyzer.store``; imports neither mitmproxy nor click.
"""
