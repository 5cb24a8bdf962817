"""``ollama-wire demo``: a staged night through a real mitmdump + addon with the official clients, and findings
that name each staged problem (no more, no less)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from analyzer.cli import demo as demo_command
from analyzer.cli.main import cli
from analyzer.emulator import EmulatorThread
from analyzer.emulator.night import BURST, MISSING_MODEL, NIGHT_MODEL, SMALL_NUM_CTX, Step
from analyzer.protocol.record import InteractionRecord
from analyzer.recorder.process import ProxyError, find_mitmdump
from analyzer.report import analyze
from analyzer.store.log import read_log


def _mitmdump_missing() -> bool:
    try:
        find_mitmdump()
    except ProxyError:
        return True
    return False


needs_mitmdump = pytest.mark.skipif(_mitmdump_missing(), reason="mitmdump not installed")
NIGHT_REQUESTS = 1 + BURST + 1 + 3 + 1


@pytest.fixture(scope="module")
def night(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    """One run of the default demo (the emulator's staged night), shared by the tests that read it."""
    if _mitmdump_missing():
        pytest.skip("mitmdump not installed")
    log_dir = tmp_path_factory.mktemp("demo") / "log"
    result = CliRunner().invoke(cli, ["demo", "--log-dir", str(log_dir)])
    assert result.exit_code == 0, result.output
    assert result.stderr == ""
    return result.stdout, log_dir


def _words(record: InteractionRecord) -> int:
    """Words in a chat's whole conversation (the emulator counts a token per word)."""
    return sum(len(str(m.get("content", "")).split()) for m in record.messages or [])


def _by_start(log_dir: Path) -> list[InteractionRecord]:
    return sorted(read_log(log_dir), key=lambda r: r.started_at)


@pytest.mark.timeout(120)
def test_the_night_is_recorded_request_by_request(night: tuple[str, Path]) -> None:
    _, log_dir = night
    records = _by_start(log_dir)
    assert len(records) == NIGHT_REQUESTS
    assert [r.path for r in records] == [
        "/api/generate",
        *["/api/chat"] * BURST,
        "/v1/chat/completions",
        *["/api/chat"] * 3,
        "/api/generate",
    ]
    assert {r.model for r in records[:-1]} == {NIGHT_MODEL}
    assert (records[-1].model, records[-1].status) == (MISSING_MODEL, 404)


@pytest.mark.timeout(120)
def test_the_findings_name_each_staged_problem(night: tuple[str, Path]) -> None:
    _, log_dir = night
    records = _by_start(log_dir)
    first, burst, clean, long_chats, missing = (
        records[0],
        records[1 : 1 + BURST],
        records[1 + BURST],
        records[-4:-1],
        records[-1],
    )
    found = {f.code: set(f.ids) for f in analyze(records).findings}
    assert set(found) == {"cold_load", "queueing", "context_truncated", "model_not_found"}
    # the first request of the night loaded the model; so did the first chat with another num_ctx (Ollama reloads)
    assert found["cold_load"] == {first.id, long_chats[0].id}
    # with one slot, every burst request but the one served first waited for it: several requests of ONE model.
    # The burst arrives all at once, so the one served first need not be the first to arrive; with one slot it is
    # the one whose Ollama total (which holds the wait) is shortest.
    served_first = min(burst, key=lambda r: r.total_duration_ms or 0.0)
    assert found["queueing"] == {r.id for r in burst if r is not served_first}
    assert {r.model for r in burst} == {NIGHT_MODEL}
    # each long chat's prompt is over its num_ctx: Ollama evaluated exactly num_ctx tokens of it
    assert found["context_truncated"] == {r.id for r in long_chats}
    assert all(r.prompt_eval_count == SMALL_NUM_CTX for r in long_chats)
    assert all(_words(r) > 2 * SMALL_NUM_CTX for r in long_chats)
    assert found["model_not_found"] == {missing.id}
    # the clean request stays silent
    assert all(clean.id not in ids for ids in found.values())


@pytest.mark.timeout(120)
def test_the_terminal_shows_the_session_then_the_findings(night: tuple[str, Path]) -> None:
    stdout, log_dir = night
    lines = stdout.splitlines()
    assert re.fullmatch(r"upstream: built-in emulator at http://127\.0\.0\.1:\d+, staging a short night .+:", lines[0])
    assert lines[1] == "          a model load takes 1.5 s, one request at a time per model (OLLAMA_NUM_PARALLEL=1)"
    assert re.fullmatch(r"proxy: +mitmdump with the ollama_log addon listening on http://127\.0\.0\.1:\d+", lines[2])
    steps = [line.strip() for line in lines[4:9]]
    assert [re.split(r"\s+→", step)[0] for step in steps] == [
        "ollama generate, first request of the night",
        f"ollama chat ×{BURST} at once, one model",
        "openai chat, streamed with usage",
        f"ollama chat ×3, a long log in num_ctx {SMALL_NUM_CTX}",
        f"ollama generate, model '{MISSING_MODEL}'",
    ]
    assert steps[-1].endswith(f"→ error 404: model '{MISSING_MODEL}' not found")
    assert f"recorded {NIGHT_REQUESTS} interactions in {log_dir}/" in stdout
    assert "\n4 findings:\n" in stdout
    for code in ("cold_load", "queueing", "context_truncated", "model_not_found"):
        assert re.search(rf"^WARNING +{code}: ", stdout, re.M), code
    report = log_dir / "report.html"
    assert lines[-1].startswith(f"report:   {report} ({NIGHT_REQUESTS} requests; findings: ")
    assert report.stat().st_size > 10_000 and (report.stat().st_mode & 0o777) == 0o600


def test_demo_log_dir_under_a_regular_file(tmp_path: Path) -> None:
    afile = tmp_path / "afile"
    afile.write_text("not a directory\n")
    result = CliRunner().invoke(cli, ["demo", "--log-dir", str(afile / "x")])
    assert result.exit_code == 1
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert result.stdout == ""  # stopped before starting anything
    assert result.stderr.splitlines() == [f"Error: {afile / 'x'}: cannot create the log directory: Not a directory"]


def test_demo_against_a_server_that_is_not_there(tmp_path: Path) -> None:
    with EmulatorThread() as stopped:
        url = stopped.url
    result = CliRunner().invoke(cli, ["demo", "--ollama", url + "/", "--log-dir", str(tmp_path / "log")])
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr.splitlines() == [f"Error: {url}: no Ollama answers there (is `ollama serve` running?)"]


@needs_mitmdump
@pytest.mark.timeout(120)
def test_demo_ollama_url_records_the_same_session_against_that_server(tmp_path: Path) -> None:
    """``--ollama URL``: the same client session, recorded against whatever server answers there. A plain server
    (no load time, unlimited slots) shows neither cold loads nor queueing; the client's own small num_ctx still
    truncates, its num_predict cuts the server's longer replies (as a real model's), and the missing model is
    still missing."""
    log_dir = tmp_path / "log"
    with EmulatorThread() as server:
        result = CliRunner().invoke(cli, ["demo", "--ollama", server.url, "--log-dir", str(log_dir), "--no-report"])
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[0] == f"upstream: real Ollama at {server.url}"
    records = read_log(log_dir)
    assert len(records) == NIGHT_REQUESTS
    found = {f.code for f in analyze(records).findings}
    assert found == {"context_truncated", "length_cutoff", "model_not_found"}
    assert not (log_dir / "report.html").exists()


@needs_mitmdump
@pytest.mark.timeout(120)
def test_demo_fails_when_fewer_records_than_requests(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A request the addon never saw (claimed by the client side, not sent) must not pass as success."""
    real_night, real_wait = demo_command.run_night, demo_command.wait_for_records

    def night_and_claim_one_more(url: str, model: str, on_step: object = None) -> list[Step]:
        return [*real_night(url, model, on_step=on_step), Step("phantom", 1, "never sent")]  # type: ignore[arg-type]

    def wait_for_the_real_ones(log_dir: Path, count: int) -> None:
        real_wait(log_dir, count - 1)

    monkeypatch.setattr(demo_command, "run_night", night_and_claim_one_more)
    monkeypatch.setattr(demo_command, "wait_for_records", wait_for_the_real_ones)
    log_dir = tmp_path / "demo"
    result = CliRunner().invoke(cli, ["demo", "--log-dir", str(log_dir), "--no-report"])
    assert result.exit_code == 1, result.output
    (line,) = result.stderr.splitlines()
    counts = f"only {NIGHT_REQUESTS} of {NIGHT_REQUESTS + 1} requests were recorded"
    assert re.fullmatch(rf"Error: {re.escape(str(log_dir))}: {counts} \(.+\)", line)
