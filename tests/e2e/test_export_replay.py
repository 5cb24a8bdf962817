"""``ollama-wire export --otlp``: recorded interactions replayed as spans with their original times, idempotently."""

from __future__ import annotations

import ollama
import pytest
from click.testing import CliRunner
from otlp_receiver import OtlpReceiver, attributes, poll

from analyzer.cli.main import cli
from analyzer.export import semconv as sc
from analyzer.export.mapping import epoch_ns, ids_for
from analyzer.recorder.process import free_port


def test_replay_sends_the_same_spans_with_original_times(proxy, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TIMEOUT", "2")
    marker = "replay-me"
    client = ollama.Client(host=proxy.url, timeout=30)
    for n in range(3):
        list(client.generate(model="llama3.2:1b", prompt=f"{marker} {n}", stream=True))
    records = {r.id: r for r in proxy.wait_for(marker, count=3)}
    receiver = OtlpReceiver().start()
    try:
        runs = []
        for _ in range(2):
            result = CliRunner().invoke(
                cli, ["export", "--otlp", receiver.url, "--model", "llama3.2:1b", str(proxy.log_dir)]
            )
            assert result.exit_code == 0, result.output
            assert result.output.startswith(f"{len(proxy.records())} of {len(proxy.records())} spans sent")
            runs.append(len(receiver.spans()))
        spans = [span for _, span in receiver.spans()]
        ours = [s for s in spans if attributes(s.attributes).get(sc.OLLAMA_RECORD_ID) in records]
        assert len(ours) == 6  # each record twice ...
        ids = {(s.trace_id, s.span_id) for s in ours}
        assert len(ids) == 3  # ... with the same ids both times
        for span in ours:
            record = records[attributes(span.attributes)[sc.OLLAMA_RECORD_ID]]
            trace_id, span_id = ids_for(record.id)
            assert (span.trace_id, span.span_id) == (trace_id.to_bytes(16, "big"), span_id.to_bytes(8, "big"))
            assert span.start_time_unix_nano == epoch_ns(record.started_at)
            assert sc.INPUT_MESSAGES not in attributes(span.attributes)  # content only with --content
        assert runs[1] == 2 * runs[0]
    finally:
        receiver.stop()


def test_replay_to_a_collector_that_is_down_fails_in_one_line(proxy, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TIMEOUT", "1")
    list(ollama.Client(host=proxy.url, timeout=30).generate(model="llama3.2:1b", prompt="replay-down", stream=True))
    proxy.wait_for("replay-down")
    result = CliRunner().invoke(cli, ["export", "--otlp", f"http://127.0.0.1:{free_port()}", str(proxy.log_dir)])
    assert result.exit_code == 1
    assert "spans not delivered" in result.output and "Traceback" not in result.output


def test_replay_refuses_a_bad_url_and_a_bad_source(tmp_path) -> None:
    result = CliRunner().invoke(cli, ["export", "--otlp", "collector:4318", str(tmp_path)])
    assert result.exit_code == 2 and "--otlp" in result.output
    result = CliRunner().invoke(cli, ["export", "--otlp", "http://127.0.0.1:9", str(tmp_path / "missing.jsonl")])
    assert result.exit_code == 1 and "missing.jsonl" in result.output and "Traceback" not in result.output


def test_poll_is_bounded() -> None:
    with pytest.raises(AssertionError, match="timed out"):
        poll(lambda: None, 0.2, "nothing")
