"""The machine right now, from the newest samples: numbers for a dashboard panel and one line of text.

For ``top``'s machine panel and the report's header; rates (server CPU in cores, energy in watts) come from the
last two samples that carry the counter.
"""

from __future__ import annotations

from collections.abc import Sequence

from analyzer.resources.timeline import Sample


def _rate(samples: Sequence[Sample], name: str) -> float | None:
    """Increase per second of counter ``name`` between the last two samples that have it."""
    found = [s for s in samples if name in s.values][-2:]
    if len(found) < 2 or found[1].t <= found[0].t:
        return None
    return max(0.0, (found[1].values[name] - found[0].values[name]) / (found[1].t - found[0].t))


def machine_now(samples: Sequence[Sample]) -> dict[str, float | None]:
    """The newest gauge values and the counters' current rates (None where no source gives them)."""
    latest: dict[str, float] = {}
    for sample in samples:
        latest.update(sample.values)
    return {
        "gpu_util_pct": latest.get("gpu_util_pct"),
        "gpu_mem_mb": latest.get("gpu_mem_mb", latest.get("ollama_vram_mb")),
        "power_w": latest.get("power_w"),
        "server_cpu_cores": _rate(samples, "cpu_s"),
        "server_rss_mb": latest.get("rss_mb"),
        "host_mem_used_pct": latest.get("host_mem_used_pct"),
    }


def machine_line(samples: Sequence[Sample]) -> str:
    """``GPU 87% 6.0 GB · 241 W · ollama 1.20 cores 4.1 GB · host mem 63%`` (parts without data left out)."""
    now = machine_now(samples)
    parts = []
    if now["gpu_util_pct"] is not None or now["gpu_mem_mb"] is not None:
        gpu = "GPU"
        if now["gpu_util_pct"] is not None:
            gpu += f" {now['gpu_util_pct']:.0f}%"
        if now["gpu_mem_mb"] is not None:
            gpu += f" {now['gpu_mem_mb'] / 1000:.1f} GB"
        parts.append(gpu)
    if now["power_w"] is not None:
        parts.append(f"{now['power_w']:.0f} W")
    if now["server_cpu_cores"] is not None or now["server_rss_mb"] is not None:
        server = "ollama"
        if now["server_cpu_cores"] is not None:
            server += f" {now['server_cpu_cores']:.2f} cores"
        if now["server_rss_mb"] is not None:
            server += f" {now['server_rss_mb'] / 1000:.1f} GB"
        parts.append(server)
    if now["host_mem_used_pct"] is not None:
        parts.append(f"host mem {now['host_mem_used_pct']:.0f}%")
    return " · ".join(parts) or "no resource samples"
