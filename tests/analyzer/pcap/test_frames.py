"""The pandas entry points: the addon's log and a capture of the same traffic as DataFrames, same columns."""

from __future__ import annotations

from analyzer.pcap.frames import read_capture
from analyzer.protocol.record import COLUMNS
from analyzer.store.frames import load_log
from tests.support.workload import ProxyCapture


def test_log_and_capture_frames_have_the_record_columns_and_the_same_texts(proxy_capture: ProxyCapture) -> None:
    from_log = load_log(proxy_capture.log_dir)
    from_capture = read_capture(proxy_capture.path, ports=(proxy_capture.proxy_port,))
    assert list(from_log.columns) == list(COLUMNS) == list(from_capture.columns)
    assert str(from_log["started_at"].dtype) == str(from_capture["started_at"].dtype) == "datetime64[us, UTC]"
    sent = {s.prompt: s.text for s in proxy_capture.sent}
    for frame in (from_log, from_capture):
        by_prompt = dict(zip(frame["prompt"], frame["response_text"], strict=True))
        assert {p: by_prompt[p] for p in sent} == sent
    assert set(from_capture["source"]) == {"pcap"} and set(from_log["source"]) == {"proxy"}
