"""``ollama-wire demo --ollama URL``: the demo's client session, recorded against a real ``ollama serve``.

The server runs as a busy box would (``OLLAMA_NUM_PARALLEL=1``), so the burst of chats to one model really queues;
the long-log chat's ``num_ctx`` is really too small; the missing model is really missing.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from analyzer.cli.main import cli
from analyzer.emulator.night import BURST, MISSING_MODEL, SMALL_NUM_CTX
from analyzer.report import analyze
from analyzer.store.log import read_log

pytestmark = pytest.mark.timeout(600)
NIGHT_REQUESTS = 1 + BURST + 1 + 3 + 1


def test_demo_records_the_same_session_against_real_ollama(real_ollama_server, tmp_path: Path) -> None:
    server = real_ollama_server(num_parallel=1)
    log_dir = tmp_path / "log"
    argv = ["demo", "--ollama", server.url, "--model", server.model, "--log-dir", str(log_dir)]
    result = CliRunner().invoke(cli, argv)
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[0] == f"upstream: real Ollama at {server.url}"
    records = sorted(read_log(log_dir), key=lambda r: r.started_at)
    assert len(records) == NIGHT_REQUESTS
    first, burst, long_chats, missing = records[0], records[1 : 1 + BURST], records[-4:-1], records[-1]
    assert first.load_duration_ms is not None and all(r.status == 200 for r in records[:-1])
    assert (missing.model, missing.status) == (MISSING_MODEL, 404) and "not found" in (missing.error or "")
    # one slot: the burst's requests waited for each other, and the wait shows only in total_duration
    waits = sorted(
        r.total_duration_ms - (r.load_duration_ms or 0) - (r.prompt_eval_duration_ms or 0) - (r.eval_duration_ms or 0)
        for r in burst
    )  # type: ignore[operator]
    assert waits[-1] > waits[0] + 1000
    # each long chat's prompt is longer than its num_ctx: Ollama evaluated at most num_ctx tokens of it
    assert all(r.prompt_eval_count is not None and r.prompt_eval_count <= SMALL_NUM_CTX for r in long_chats)
    codes = {f.code for f in analyze(records).findings}
    assert {"queueing", "context_truncated", "model_not_found"} <= codes
    assert (log_dir / "report.html").exists()
