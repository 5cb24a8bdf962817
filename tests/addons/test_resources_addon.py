"""The resources addon with mitmproxy's harness: the hub's enrich step fills the record before it is written."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import pytest
from mitmproxy.test import taddons
from test_ollama_log import ADDON_PATH, ndjson_body, ollama_flow, stream_through

from analyzer.protocol.observer import ObserverHub
from analyzer.protocol.record import RESOURCE_COLUMNS, InteractionRecord
from analyzer.recorder.addon import OllamaLog
from analyzer.recorder.resources_addon import ResourcesAddon, upstream_target
from analyzer.recorder.writer import wait_until_written
from analyzer.resources.timeline import SamplingThread
from analyzer.store.log import read_log


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


def _recorder(tmp_path: Path, *observers: object) -> tuple[ObserverHub, OllamaLog]:
    hub = ObserverHub()
    for observer in observers:
        hub.add(observer)  # type: ignore[arg-type]
    return hub, OllamaLog(hub)


def test_enrich_fills_the_written_record_and_a_failing_observer_is_isolated(tmp_path: Path, caplog) -> None:
    hub, recorder = _recorder(tmp_path, Broken(), Stamp())
    with taddons.context(recorder) as tctx:
        tctx.configure(recorder, ollama_log_dir=str(tmp_path / "log"))
        f = ollama_flow()
        recorder.responseheaders(f)
        stream_through(f, [ndjson_body()])
        with caplog.at_level(logging.WARNING):
            recorder.response(f)
    assert wait_until_written(recorder.writer, 15.0)
    (record,) = read_log(tmp_path / "log")
    assert record.energy_j == 1.5 and record.complete
    assert hub.failures == 1


def test_the_script_wires_the_resources_addon_to_the_recorders_hub() -> None:
    with taddons.context() as loading:
        loaded = loading.script(str(ADDON_PATH)).addons
    recorder = next(a for a in loaded if isinstance(a, OllamaLog))
    resources = next(a for a in loaded if isinstance(a, ResourcesAddon))
    assert loaded[-1] is recorder  # the feeds load first: their options exist when the recorder checks --set values
    assert resources in recorder.hub.observers


def test_a_lone_request_gets_the_whole_cpu_of_its_span(tmp_path: Path) -> None:
    hub = ObserverHub()
    recorder, resources = OllamaLog(hub), ResourcesAddon(hub)
    with taddons.context(recorder, resources) as tctx:
        tctx.configure(recorder, ollama_log_dir=str(tmp_path / "log"))
        tctx.configure(resources, ollama_resources="off")  # no sampling thread: the test feeds the timeline itself
        now = time.time()
        for i in range(-40, 41):  # one CPU second per second, 700 MB, around the request
            resources.timeline.add(now + i * 0.05, {"cpu_s": 100 + i * 0.05, "rss_mb": 700.0})
        resources.thread = SamplingThread([], resources.timeline)  # "running", never started
        f = ollama_flow()
        recorder.responseheaders(f)
        stream_through(f, [ndjson_body()])
        f.response.timestamp_end = time.time()
        recorder.response(f)
    assert wait_until_written(recorder.writer, 15.0)
    (record,) = read_log(tmp_path / "log")
    assert record.total_ms is not None and record.server_cpu_ms == pytest.approx(record.total_ms, rel=1e-3)
    assert record.server_rss_max_mb == 700.0
    assert record.energy_j is None and record.gpu_util_mean_pct is None
    assert resources.live == {} and len(resources.recent) == 1


def test_off_leaves_every_resource_column_empty(tmp_path: Path) -> None:
    hub = ObserverHub()
    recorder, resources = OllamaLog(hub), ResourcesAddon(hub)
    with taddons.context(recorder, resources) as tctx:
        tctx.configure(recorder, ollama_log_dir=str(tmp_path / "log"))
        tctx.configure(resources, ollama_resources="off")
        f = ollama_flow()
        recorder.responseheaders(f)
        stream_through(f, [ndjson_body()])
        recorder.response(f)
    assert wait_until_written(recorder.writer, 15.0)
    (record,) = read_log(tmp_path / "log")
    assert all(getattr(record, name) is None for name in RESOURCE_COLUMNS)


@pytest.mark.parametrize(
    ("modes", "expected"),
    [
        (["reverse:http://127.0.0.1:11500@127.0.0.1:11435"], "http://127.0.0.1:11500"),
        (["regular"], "http://127.0.0.1:11434"),
        (["reverse:http://[::1]:11434@[::1]:0"], "http://[::1]:11434"),
    ],
)
def test_the_sampled_server_is_the_reverse_upstream(modes: list[str], expected: str) -> None:
    assert upstream_target(modes, 200).base_url == expected


def test_bad_settings_are_refused_by_configure(tmp_path: Path) -> None:
    resources = ResourcesAddon(ObserverHub())
    with taddons.context(resources) as tctx:
        with pytest.raises(Exception, match="unknown resource source"):
            tctx.configure(resources, ollama_resources="process,gpu")
        with pytest.raises(Exception, match=r"10\.\.60000"):
            tctx.configure(resources, ollama_resources_interval=1)


def test_a_server_that_starts_after_the_proxy_is_picked_up(monkeypatch: pytest.MonkeyPatch) -> None:
    from analyzer.emulator import EmulatorConfig, EmulatorThread
    from analyzer.recorder import resources_addon
    from analyzer.recorder.process import free_port

    monkeypatch.setattr(resources_addon, "RETRY_S", 0.2)
    port = free_port()
    resources = ResourcesAddon(ObserverHub())
    with taddons.context(resources) as tctx:
        tctx.configure(
            resources,
            mode=[f"reverse:http://127.0.0.1:{port}@127.0.0.1:0"],
            ollama_resources="process",
            ollama_resources_interval=50,
        )
        resources.running()
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
            resources.done()


def test_an_hour_long_request_is_computed_from_a_bounded_number_of_samples() -> None:
    resources = ResourcesAddon(ObserverHub())
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
