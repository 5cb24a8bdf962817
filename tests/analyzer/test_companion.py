"""The feeds' companion in-process: records reach it as the proxy sends them, are enriched by the resource feed,
handed to every feed, written to the log and acknowledged; and the feed options are declared once."""

from __future__ import annotations

import io
import json
import logging
import time
from pathlib import Path

import pytest
from mitmproxy.test import taddons

from analyzer.companion import resource_feed, wire
from analyzer.companion.feeds import FEED_OPTION_NAMES, FeedSettings
from analyzer.companion.process import Companion
from analyzer.companion.resource_feed import ResourceFeed
from analyzer.protocol.interaction import InteractionBuilder
from analyzer.protocol.record import RESOURCE_COLUMNS, InteractionRecord
from analyzer.recorder.addon import OllamaLog, upstream_server
from analyzer.resources.registry import Target
from analyzer.resources.timeline import SamplingThread
from analyzer.store.log import read_log
from tests.addons.test_ollama_log import ADDON_PATH


class Stamp:
    """An observer that owns one column and fills it in enrich_record."""

    def interaction_started(self, builder: object) -> None: ...
    def interaction_progressed(self, builder: object) -> None: ...
    def interaction_finished(self, record: InteractionRecord) -> None: ...

    def enrich_record(self, record: InteractionRecord) -> None:
        record.energy_j = 1.5


class Broken(Stamp):
    def enrich_record(self, record: InteractionRecord) -> None:
        raise RuntimeError("observer bug")


def _companion(tmp_path: Path, resources: str = "off") -> tuple[Companion, io.BytesIO]:
    out = io.BytesIO()
    companion = Companion(FeedSettings(log_dir=str(tmp_path / "log"), resources=resources), out)
    return companion, out


def _builder(record_id: str = "r1", at: float | None = None) -> InteractionBuilder:
    builder = InteractionBuilder(source="proxy", record_id=record_id, client="127.0.0.1:5000")
    body = json.dumps({"model": "m", "prompt": "hello"}).encode()
    builder.request_started(at or time.time(), "POST", "/api/generate", None)
    builder.request_body(body, at or time.time())
    return builder


def _send(companion: Companion, data: bytes) -> None:
    for line in data.splitlines():
        companion.handle(json.loads(line))


def _finished(builder: InteractionBuilder, at: float | None = None) -> InteractionRecord:
    builder.response_started(builder.started_at or time.time(), 200, {"content-type": "application/x-ndjson"})
    builder.response_body(b'{"response":"hi","done":false}\n{"response":"","done":true,"eval_count":1}\n', time.time())
    return builder.finish(at or time.time())


def _written(companion: Companion, out: io.BytesIO, log_dir: Path) -> list[InteractionRecord]:
    companion.writer.close(15.0)
    acks = [seq for line in out.getvalue().splitlines() for seq in json.loads(line).get("ack", [])]
    records = read_log(log_dir)
    assert len(acks) == len(records)  # every record written is acknowledged, once
    return records


def test_enrich_fills_the_written_record_and_a_failing_observer_is_isolated(tmp_path: Path, caplog) -> None:
    companion, out = _companion(tmp_path)
    companion.hub.add(Broken())  # type: ignore[arg-type]
    companion.hub.add(Stamp())  # type: ignore[arg-type]
    builder = _builder()
    _send(companion, wire.start_message(builder, None))
    with caplog.at_level(logging.WARNING):
        _send(companion, wire.record_line(7, _finished(builder)))
    (record,) = _written(companion, out, tmp_path / "log")
    assert record.energy_j == 1.5 and record.complete and record.prompt == "hello"
    assert companion.hub.failures == 1
    assert b'{"ack":[7]}' in out.getvalue()


def test_the_script_loads_only_the_recorder_and_it_declares_every_feed_option() -> None:
    with taddons.context() as loading:
        loaded = loading.script(str(ADDON_PATH)).addons
        assert [type(a) for a in loaded] == [OllamaLog]
        for name in FEED_OPTION_NAMES:
            assert name in loading.options


def test_a_lone_request_gets_the_whole_cpu_of_its_span(tmp_path: Path) -> None:
    companion, out = _companion(tmp_path)
    resources = ResourceFeed()
    companion.hub.add(resources)
    now = time.time()
    for i in range(-40, 41):  # one CPU second per second, 700 MB, around the request
        resources.timeline.add(now + i * 0.05, {"cpu_s": 100 + i * 0.05, "rss_mb": 700.0})
    resources.thread = SamplingThread([], resources.timeline)  # "running", never started
    builder = _builder(at=now - 0.5)
    _send(companion, wire.start_message(builder, None))
    builder.response_started(now - 0.4, 200, {"content-type": "application/x-ndjson"})
    builder.response_body(b'{"response":"hi","done":false}\n', now - 0.3)
    _send(companion, wire.progress_message(builder.record_id, builder.in_flight(), None))
    assert resources.live[builder.record_id].fragments == 1
    builder.response_body(b'{"response":"","done":true,"eval_count":1}\n', now - 0.2)
    _send(companion, wire.record_line(1, builder.finish(now)))
    (record,) = _written(companion, out, tmp_path / "log")
    assert record.total_ms is not None and record.server_cpu_ms == pytest.approx(record.total_ms, rel=1e-3)
    assert record.server_rss_max_mb == 700.0
    assert record.energy_j is None and record.gpu_util_mean_pct is None
    assert resources.live == {} and len(resources.recent) == 1


def test_off_leaves_every_resource_column_empty(tmp_path: Path) -> None:
    companion, out = _companion(tmp_path, resources="off")
    companion.open_feeds()
    assert companion.resources is None
    _send(companion, wire.record_line(1, _finished(_builder())))
    (record,) = _written(companion, out, tmp_path / "log")
    assert all(getattr(record, name) is None for name in RESOURCE_COLUMNS)


@pytest.mark.parametrize(
    ("modes", "expected"),
    [
        (["reverse:http://127.0.0.1:11500@127.0.0.1:11435"], ("127.0.0.1", 11500)),
        (["regular"], ("127.0.0.1", 11434)),
        (["reverse:http://[::1]:11434@[::1]:0"], ("::1", 11434)),
    ],
)
def test_the_sampled_server_is_the_reverse_upstream(modes: list[str], expected: tuple[str, int]) -> None:
    assert upstream_server(modes) == expected


def test_bad_feed_settings_are_refused_by_the_recorders_configure() -> None:
    recorder = OllamaLog()
    with taddons.context(recorder) as tctx:
        with pytest.raises(Exception, match="unknown resource source"):
            tctx.configure(recorder, ollama_resources="process,gpu")
        with pytest.raises(Exception, match=r"10\.\.60000"):
            tctx.configure(recorder, ollama_resources_interval=1)
        with pytest.raises(Exception, match="not an http"):
            tctx.configure(recorder, ollama_otlp_endpoint="collector:4318")


def test_a_server_that_starts_after_the_proxy_is_picked_up(monkeypatch: pytest.MonkeyPatch) -> None:
    from analyzer.emulator import EmulatorConfig, EmulatorThread
    from analyzer.recorder.process import free_port

    monkeypatch.setattr(resource_feed, "RETRY_S", 0.2)
    port = free_port()
    resources = ResourceFeed()
    resources.start("process", Target("127.0.0.1", port, 50))
    try:
        deadline = time.monotonic() + 20
        while resources.thread is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert resources.thread is not None and resources.thread.samplers == []
        assert "nothing listens" in resources.unavailable["process"]
        with EmulatorThread(EmulatorConfig(), port=port):
            while not resources.thread.samplers and time.monotonic() < deadline:
                time.sleep(0.05)
            assert [s.name for s in resources.thread.samplers] == ["process"]
            assert "process" not in resources.unavailable
    finally:
        resources.close()


def test_an_hour_long_request_is_computed_from_a_bounded_number_of_samples() -> None:
    resources = ResourceFeed()
    now = time.time()
    for i in range(18_000):  # the whole ring: one hour at 200 ms, one CPU second per second
        resources.timeline.add(now - 3600 + i * 0.2, {"cpu_s": i * 0.2, "rss_mb": 100.0 + (i == 9000)})
    resources.thread = SamplingThread([], resources.timeline)
    started = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now - 3590)) + ".000000Z"
    record = InteractionRecord(
        id="pull", started_at=started, stream=True, total_ms=3_500_000, ttft_ms=10, gen_ms=3_499_000
    )
    resources.enrich_record(record)
    assert record.server_cpu_ms == pytest.approx(3_500_000, rel=1e-3)
    assert record.server_rss_max_mb is not None and record.server_rss_max_mb >= 100


def test_a_request_body_with_undecodable_bytes_crosses_the_pipe_unchanged() -> None:
    builder = InteractionBuilder(source="proxy", record_id="b")
    builder.request_started(1.0, "POST", "/api/generate", None)
    body = b'{"model":"m","prompt":"\xff\xfe caf\xc3\xa9"}'
    builder.request_body(body, 1.0)
    message = json.loads(wire.start_message(builder, body))
    assert wire.body_bytes(message["body"]) == body and message["size"] == len(body)


def test_the_proxy_encodes_a_record_exactly_as_the_log_does() -> None:
    builder = InteractionBuilder(source="proxy", record_id="enc")
    body = json.dumps({"model": "m", "messages": [{"role": "user", "content": 'héllo \u2028 "q" \x00'}]})
    builder.request_started(1.0, "POST", "/api/chat", None)
    builder.request_body(body.encode(), 1.0)
    builder.response_started(1.1, 200, {"content-type": "application/x-ndjson"})
    line = {"message": {"role": "assistant", "content": "ü\n", "tool_calls": [{"function": {"name": "f"}}]}}
    builder.response_body(json.dumps(line).encode() + b"\n" + b'{"done":true,"eval_count":3}\n', 1.2)
    record = builder.finish(1.3)
    record.flags.append("x")
    assert json.loads(record.to_json()) == record.to_dict()
    message = json.loads(wire.record_line(3, record))
    assert message["seq"] == 3 and InteractionRecord.from_dict(message["r"]) == record
