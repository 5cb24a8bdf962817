"""The live tier (``-m live``, root + tcpdump): fresh captures of the full workload made in the test, so the
corpus never hides a change in what tcpdump, the kernel or the clients produce today.

The same checks as on the corpus: one record per request, each text what its client received, both engines
identical; through a real mitmdump, each leg agrees with the addon's log.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from analyzer.pcap.analyze import AnalyzeOptions, analyze_capture
from analyzer.store.log import read_log
from tests.support.tcpdump import require_live_capture
from tests.support.workload import capture_workload, make_proxy_capture

pytestmark = [pytest.mark.live, pytest.mark.timeout(180)]
ENGINES = ["fast", pytest.param("tshark", marks=pytest.mark.skipif(not shutil.which("tshark"), reason="no tshark"))]


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize(("host", "iface"), [("127.0.0.1", "lo"), ("::1", "lo"), ("127.0.0.1", "any")])
def test_fresh_capture_gives_what_each_client_received(tmp_path: Path, host: str, iface: str, engine: str) -> None:
    require_live_capture()
    workload = capture_workload(tmp_path, host, {"live": iface})
    result = analyze_capture(workload.files["live"], AnalyzeOptions(ports=(workload.port,), engine=engine))
    assert result.error is None and result.stats.gaps == 0
    by_prompt = {r.prompt: r for r in result.records}
    assert sorted(by_prompt) == sorted(s.prompt for s in workload.sent)
    for sent in workload.sent:
        record = by_prompt[sent.prompt]
        assert (record.response_text, record.thinking_text) == (sent.text, sent.thinking), sent.name
        assert (record.status, record.complete) == (sent.status, sent.complete), sent.name
        assert sent.flags_match(record.flags), (sent.name, record.flags)
        assert (record.eval_count, record.done_reason, record.error) == (sent.eval_count, sent.done_reason, sent.error)


def test_fresh_proxy_capture_agrees_with_the_addon_log(tmp_path: Path) -> None:
    require_live_capture()
    made = make_proxy_capture(tmp_path)
    logged = {r.prompt: r for r in read_log(made.log_dir)}
    assert sorted(logged) == sorted(s.prompt for s in made.sent)
    for port in (made.emulator_port, made.proxy_port):
        records = analyze_capture(made.path, AnalyzeOptions(ports=(port,))).records
        assert sorted(r.prompt or "" for r in records) == sorted(logged)
        for record in records:
            proxy = logged[record.prompt]
            assert (record.response_text, record.status, record.eval_count) == (
                proxy.response_text,
                proxy.status,
                proxy.eval_count,
            )
