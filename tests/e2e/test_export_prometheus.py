"""A real Prometheus server scrapes the addon's /metrics while the official clients stream through mitmdump.

Prometheus (Debian's ``prometheus`` package) runs on loopback with a temporary config (1 s scrape interval)
and temporary storage; the answers of PromQL queries over its HTTP API are compared with the records.
"""

from __future__ import annotations

import itertools
import json
import math
import re
import shutil
import subprocess
import threading
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import ollama
import openai
import pytest
from otlp_receiver import poll

from analyzer.export import semconv as sc
from analyzer.recorder.process import free_port, wait_for_port

pytestmark = pytest.mark.skipif(shutil.which("prometheus") is None, reason="prometheus not installed")


class Prometheus:
    def __init__(self, directory: Path, target: str) -> None:
        self.port = free_port()
        config = directory / "prometheus.yml"
        config.write_text(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
            f"scrape_configs:\n  - job_name: ollama-wire\n    static_configs:\n      - targets: ['{target}']\n"
        )
        self.log = (directory / "prometheus.log").open("wb")
        self.process = subprocess.Popen(
            [
                "prometheus",
                f"--config.file={config}",
                f"--storage.tsdb.path={directory / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
            ],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        assert wait_for_port("127.0.0.1", self.port, 30, self.process), "prometheus did not start"

    def query(self, promql: str) -> list[dict]:
        url = f"http://127.0.0.1:{self.port}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
        with urllib.request.urlopen(url, timeout=5) as reply:
            answer = json.load(reply)
        assert answer["status"] == "success", answer
        return answer["data"]["result"]

    def by(self, promql: str, label: str) -> dict[str, float]:
        return {item["metric"].get(label, ""): float(item["value"][1]) for item in self.query(promql)}

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)
        self.log.close()


@pytest.fixture
def prometheus_factory(tmp_path: Path) -> Iterator:
    started: list[Prometheus] = []

    def start(target: str) -> Prometheus:
        started.append(Prometheus(tmp_path, target))
        return started[-1]

    yield start
    for running in started:
        running.stop()


def test_promql_over_scraped_metrics_matches_the_records(emulator_factory, mitmdump_factory, prometheus_factory):
    emulator = emulator_factory(prefill_ms=30.0, token_ms=2.0)  # TTFTs of tens of ms: several buckets apart
    metrics_port = free_port()
    proxy = mitmdump_factory(emulator, options=[f"ollama_prometheus=127.0.0.1:{metrics_port}"])
    prometheus = prometheus_factory(f"127.0.0.1:{metrics_port}")
    marker = "promql"
    client = ollama.Client(host=proxy.url, timeout=30)
    for n in range(5):
        list(client.chat(model="llama3.2:1b", messages=[{"role": "user", "content": f"{marker} {n}"}], stream=True))
    oai = openai.OpenAI(base_url=proxy.url + "/v1", api_key="x", max_retries=0, timeout=30)
    for n in range(3):
        list(
            oai.chat.completions.create(
                model="qwen3:0.6b",
                messages=[{"role": "user", "content": f"{marker} openai {n}" + " more" * n}],
                stream=True,
                stream_options={"include_usage": True},
            )
        )
    records = proxy.wait_for(marker, count=8)
    expected_counts = {"llama3.2:1b": 5.0, "qwen3:0.6b": 3.0}
    duration = sc.PROMETHEUS_NAMES[sc.CLIENT_OPERATION_DURATION]
    poll(
        lambda: (
            prometheus.by(f"sum by (gen_ai_request_model) ({duration}_count)", "gen_ai_request_model")
            == expected_counts
        ),
        40,
        "Prometheus to scrape every request",
    )
    tokens = prometheus.by(
        f"sum by (gen_ai_token_type) ({sc.PROMETHEUS_NAMES[sc.CLIENT_TOKEN_USAGE]}_sum)", "gen_ai_token_type"
    )
    assert tokens == {
        "input": sum(r.prompt_eval_count or 0 for r in records),
        "output": sum(r.eval_count or 0 for r in records),
    }
    assert prometheus.by("sum by (gen_ai_operation_name) (ollama_requests_in_flight)", "gen_ai_operation_name") == {
        "chat": 0.0,
        "embeddings": 0.0,
        "text_completion": 0.0,
    }

    # TTFT p95: Prometheus interpolates inside the bucket holding the 95th-percentile rank, so the records'
    # own 95th-percentile TTFT must lie in the bucket that holds Prometheus's estimate.
    ttft = sc.PROMETHEUS_NAMES[sc.CLIENT_TIME_TO_FIRST_CHUNK]
    (estimate,) = prometheus.by(f"histogram_quantile(0.95, sum by (le) ({ttft}_bucket))", "").values()
    bounds = (0.0, *sc.FIRST_TOKEN_BUCKETS, math.inf)
    low, high = next((lo, hi) for lo, hi in itertools.pairwise(bounds) if lo < estimate <= hi)
    values = sorted(r.ttft_ms / 1000 for r in records if r.ttft_ms is not None)
    assert len(values) == 8
    ranked = values[math.ceil(0.95 * len(values)) - 1]
    assert low < ranked <= high, (estimate, values)


def _in_flight(url: str) -> float | None:
    page = urllib.request.urlopen(url, timeout=5).read().decode()
    match = re.search(r'^ollama_requests_in_flight\{gen_ai_operation_name="chat",[^}]*\} (\S+)$', page, re.M)
    return float(match.group(1)) if match else None


def test_in_flight_counts_a_running_stream(emulator_factory, mitmdump_factory):
    emulator = emulator_factory(token_ms=20.0)  # 100 tokens: a stream of about 2 s
    metrics_port = free_port()
    proxy = mitmdump_factory(emulator, options=[f"ollama_prometheus=127.0.0.1:{metrics_port}"])
    url = f"http://127.0.0.1:{metrics_port}/metrics"
    assert _in_flight(url) == 0
    client = ollama.Client(host=proxy.url, timeout=30)
    messages = [{"role": "user", "content": "in-flight"}]
    stream = client.chat(model="llama3.2:1b", messages=messages, stream=True, options={"emulator_tokens": 100})
    reader = threading.Thread(target=lambda: list(stream), daemon=True)
    reader.start()
    poll(lambda: _in_flight(url) == 1, 10, "one chat in flight")
    reader.join(30)
    proxy.wait_for("in-flight")
    poll(lambda: _in_flight(url) == 0, 10, "no chat in flight after the stream")
