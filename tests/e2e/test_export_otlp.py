"""OTLP export through a real mitmdump: what a collector receives matches the records, field for field.

A loopback OTLP/HTTP receiver decodes the exporter's requests with the official opentelemetry-proto messages;
the official ollama and openai clients stream through ``mitmdump -s addons/ollama_log.py`` to the emulator.
The unhealthy-collector tests check that the proxy keeps serving correct streams and reports what it dropped.
"""

from __future__ import annotations

import re
import urllib.request
from collections.abc import Iterator

import ollama
import openai
import pytest
from otlp_receiver import OtlpReceiver, attributes, poll

from analyzer.emulator import EmulatorThread
from analyzer.export import semconv as sc
from analyzer.export.mapping import measurements, span_data
from analyzer.recorder.process import free_port

# Export quickly in tests; give up on an unresponsive collector after 1 s.
FAST_EXPORT = {
    "OTEL_BSP_SCHEDULE_DELAY": "100",
    "OTEL_METRIC_EXPORT_INTERVAL": "300",
    "OTEL_EXPORTER_OTLP_TIMEOUT": "1",
    "OTEL_SERVICE_NAME": "wire-test",
    "OTEL_RESOURCE_ATTRIBUTES": "deployment.environment.name=ci",
}
SPAN_KIND_CLIENT = 3
STATUS_ERROR = 2


@pytest.fixture
def fast_export(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in FAST_EXPORT.items():
        monkeypatch.setenv(name, value)


@pytest.fixture
def receiver() -> Iterator[OtlpReceiver]:
    running = OtlpReceiver().start()
    yield running
    running.stop()


def test_spans_and_metrics_match_the_records(emulator, mitmdump_factory, receiver, fast_export) -> None:
    proxy = mitmdump_factory(emulator, options=[f"ollama_otlp_endpoint={receiver.url}", "ollama_export_content=true"])
    marker = "otlp-fields"
    client = ollama.Client(host=proxy.url, timeout=30)
    list(client.chat(model="llama3.2:1b", messages=[{"role": "user", "content": f"{marker} a"}], stream=True))
    client.generate(model="qwen3:0.6b", prompt=f"{marker} b", stream=False)
    with pytest.raises(ollama.ResponseError):
        client.chat(model="no-such-model", messages=[{"role": "user", "content": f"{marker} c"}])
    oai = openai.OpenAI(base_url=proxy.url + "/v1", api_key="x", max_retries=0, timeout=30)
    list(
        oai.chat.completions.create(
            model="llama3.2:1b",
            messages=[{"role": "user", "content": f"{marker} d"}],
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    records = proxy.wait_for(marker, count=4)
    by_id = {r.id: r for r in records}

    def all_spans() -> dict[str, tuple[dict, object]] | None:
        found = {attributes(s.attributes).get(sc.OLLAMA_RECORD_ID): (res, s) for res, s in receiver.spans()}
        return found if set(by_id) <= set(found) else None

    spans = poll(all_spans, 20, "a span per record")
    for record_id, record in by_id.items():
        resource, span = spans[record_id]
        expected = span_data(record, content=True)
        assert resource["service.name"] == "wire-test"
        assert resource["deployment.environment.name"] == "ci"
        assert span.name == expected.name
        assert span.kind == SPAN_KIND_CLIENT
        assert span.trace_id == expected.trace_id.to_bytes(16, "big")
        assert span.span_id == expected.span_id.to_bytes(8, "big")
        assert span.start_time_unix_nano == expected.start_ns
        assert span.end_time_unix_nano == expected.end_ns
        assert attributes(span.attributes) == expected.attributes
        assert [(e.name, e.time_unix_nano, attributes(e.attributes)) for e in span.events] == [
            (e.name, e.timestamp_ns, e.attributes) for e in expected.events
        ]
        assert (span.status.code == STATUS_ERROR) == (expected.error is not None)
    failed = next(r for r in records if r.model == "no-such-model")
    assert attributes(spans[failed.id][1].attributes)[sc.ERROR_TYPE] == "404"
    streamed = next(r for r in records if r.api == "ollama" and r.kind == "chat")
    assert f"{marker} a" in attributes(spans[streamed.id][1].attributes)[sc.INPUT_MESSAGES]

    # Metrics: cumulative histograms whose counts and sums equal the records' values per model.
    wanted = [m for r in records for m in measurements(r)]

    def settled() -> dict | None:
        metrics = receiver.last_metrics()
        duration = metrics.get(sc.CLIENT_OPERATION_DURATION)
        count = sum(p.count for p in duration.histogram.data_points) if duration else 0
        return metrics if count == sum(m.metric == sc.CLIENT_OPERATION_DURATION for m in wanted) else None

    metrics = poll(settled, 20, "metrics covering every record")
    for name, (unit, _, boundaries) in sc.HISTOGRAMS.items():
        expected_points: dict[tuple, list[float]] = {}
        for m in wanted:
            if m.metric == name:
                expected_points.setdefault(tuple(sorted(m.attributes.items())), []).append(m.value)
        if not expected_points:
            continue
        metric = metrics[name]
        assert metric.unit == unit
        got = {tuple(sorted(attributes(p.attributes).items())): p for p in metric.histogram.data_points}
        assert set(got) == set(expected_points), name
        for key, values in expected_points.items():
            point = got[key]
            assert list(point.explicit_bounds) == list(boundaries)
            assert point.count == len(values)
            assert point.sum == pytest.approx(sum(values), rel=1e-9, abs=1e-12)
    usage = {"input": 0.0, "output": 0.0}
    for point in metrics[sc.CLIENT_TOKEN_USAGE].histogram.data_points:
        usage[attributes(point.attributes)[sc.TOKEN_TYPE]] += point.sum
    assert usage["input"] == sum(r.prompt_eval_count or 0 for r in records)
    assert usage["output"] == sum(r.eval_count or 0 for r in records)
    assert sc.OLLAMA_REQUESTS_IN_FLIGHT in metrics


def _dropped(metrics_url: str) -> dict[str, float]:
    text = urllib.request.urlopen(metrics_url, timeout=5).read().decode()
    return {m[0]: float(m[1]) for m in re.findall(r'^ollama_export_dropped_total\{signal="(\w+)"\} (\S+)$', text, re.M)}


@pytest.mark.parametrize("mode", ["down", "slow", "fail"])
def test_proxy_stays_healthy_when_the_collector_is(mode, emulator_factory, mitmdump_factory, fast_export, monkeypatch):
    monkeypatch.setenv("OTEL_BSP_MAX_QUEUE_SIZE", "4")  # a small span queue, so a stuck collector overflows it
    if mode == "slow":  # wait for the collector longer than the test runs: exports are still hanging at shutdown
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_TIMEOUT", "30")
    emulator: EmulatorThread = emulator_factory()
    receiver = None
    if mode == "down":
        url = f"http://127.0.0.1:{free_port()}"
    else:
        receiver = OtlpReceiver(mode).start()
        url = receiver.url
    metrics_port = free_port()
    try:
        proxy = mitmdump_factory(
            emulator, options=[f"ollama_otlp_endpoint={url}", f"ollama_prometheus=127.0.0.1:{metrics_port}"]
        )
        client = ollama.Client(host=proxy.url, timeout=30)
        marker = f"healthy-{mode}"
        for n in range(12):
            body = {"model": "llama3.2:1b", "prompt": f"{marker} {n}"}
            text = "".join(part.response for part in client.generate(**body, stream=True))
            from analyzer.emulator import expected_text
            from analyzer.protocol.endpoints import classify

            assert text == expected_text(classify("/api/generate"), body, emulator.config)
        records = proxy.wait_for(marker, count=12)
        assert all(r.complete and not r.flags for r in records)
        dropped = poll(
            lambda: (d := _dropped(f"http://127.0.0.1:{metrics_port}/metrics")).get("traces") and d,
            30,
            "dropped spans on /metrics",
        )
        assert dropped["traces"] >= 1
        poll(lambda: "ollama_export: could not export" in proxy.console(), 30, "the drop warning")
        assert proxy.stop() == 0  # shut down cleanly, not killed after the stop timeout
        assert "ollama_export: could not export" in proxy.console()
    finally:
        if receiver is not None:
            receiver.stop()
