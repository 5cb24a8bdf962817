"""Fuzz tests: hypothesis profiles ``ci`` (default, bounded: a few tens of seconds for the whole folder)
and ``soak`` (``make fuzz``: HYPOTHESIS_PROFILE=soak, many more cases per property)."""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

_COMMON = {"deadline": None, "suppress_health_check": [HealthCheck.too_slow, HealthCheck.data_too_large]}
settings.register_profile("ci", max_examples=100, derandomize=True, **_COMMON)
settings.register_profile("soak", max_examples=int(os.environ.get("FUZZ_EXAMPLES", "20000")), **_COMMON)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
