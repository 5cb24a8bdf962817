"""The committed corpus against its goldens: ``analyze-pcap --jsonl`` with each engine prints exactly the golden
file, and the library gives the same records. No root and no tcpdump needed (the tshark engine needs tshark).

The goldens were made by ``tests/data/captures/regenerate.py`` and checked by eye; a change in what the analyzer
makes of a capture shows here as a whole-record diff. Beside the goldens, facts that do not depend on them:
the cut stream is flagged and holds a prefix of what its client received, the TLS capture is unreadable
without its key log, and every text is what the client received.
"""

from __future__ import annotations

import json
import shutil

import pytest
from click.testing import CliRunner

from analyzer.cli.analyze import analyze_pcap
from analyzer.pcap.analyze import AnalyzeOptions, analyze_capture
from analyzer.protocol.record import FLAG_CAPTURE_ENDED_MID_RESPONSE
from tests.support.corpus import CORPUS, Entry, entries

needs_tshark = pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark not installed")
CORPUS_BUDGET_BYTES = 600 * 1024
ENTRIES = entries()
# The fast engine does not decrypt TLS: the TLS capture is the tshark engine's alone.
CASES = [
    pytest.param(name, engine, id=f"{name}-{engine}", marks=[needs_tshark] if engine == "tshark" else [])
    for name, entry in ENTRIES.items()
    for engine in (("tshark",) if "tls_keylog" in entry.extra else ("fast", "tshark"))
]


def run_cli(entry: Entry, *extra: str, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.chdir(CORPUS)  # the golden arguments name files relative to the corpus
    result = CliRunner().invoke(analyze_pcap, [*entry.golden_argv(), *extra], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.stdout


@pytest.mark.parametrize(("name", "engine"), CASES)
def test_cli_output_is_the_golden(name: str, engine: str, monkeypatch: pytest.MonkeyPatch) -> None:
    entry = ENTRIES[name]
    assert run_cli(entry, "--engine", engine, monkeypatch=monkeypatch) == entry.golden_path.read_text("utf-8")


@pytest.mark.parametrize(("name", "engine"), CASES)
def test_library_records_are_the_golden(name: str, engine: str) -> None:
    entry = ENTRIES[name]
    keylog = entry.extra.get("tls_keylog")
    ports = (entry.port, entry.extra["proxy_port"]) if "proxy_port" in entry.extra else (entry.port,)
    options = AnalyzeOptions(
        ports=ports,
        engine=engine,
        tls_keylog=CORPUS / keylog if keylog else None,
        tls_ports=(entry.port,) if keylog else (443,),
    )
    result = analyze_capture(entry.path, options)
    assert result.error is None and result.warnings == []
    by_id = sorted(entry.golden(), key=lambda d: d["id"])
    assert sorted((r.to_dict() for r in result.records), key=lambda d: d["id"]) == by_id


def test_every_request_has_its_golden_record() -> None:
    """Each golden holds one record per request of its workload (two, one per leg, through the proxy)."""
    for entry in ENTRIES.values():
        legs = 2 if "proxy_port" in entry.extra else 1
        prompts = sorted(d["prompt"] for d in entry.golden())
        assert prompts == sorted(s.prompt for s in entry.sent for _ in range(legs)), entry.name


def test_golden_texts_are_what_the_clients_received() -> None:
    """Every golden record (both legs of the proxy capture) holds what its client received."""
    for entry in ENTRIES.values():
        if entry.name == "cut":
            continue
        sent_by_prompt = {s.prompt: s for s in entry.sent}
        for record in entry.golden():
            sent = sent_by_prompt[record["prompt"]]
            where = f"{entry.name}: {sent.name} on {record['server']}"
            assert (record["response_text"], record["thinking_text"]) == (sent.text, sent.thinking), where
            assert (record["status"], record["complete"]) == (sent.status, sent.complete), where
            assert sent.flags_match(record["flags"]), (where, record["flags"])


def test_cut_stream_is_flagged_and_holds_a_prefix_of_the_reply() -> None:
    entry = ENTRIES["cut"]
    (record,) = entry.golden()
    (sent,) = entry.sent
    assert record["flags"] == [FLAG_CAPTURE_ENDED_MID_RESPONSE]
    assert record["complete"] is False and record["done_reason"] is None and record["eval_count"] is None
    assert record["response_text"] and sent.text.startswith(record["response_text"])
    assert len(record["response_text"]) < len(sent.text)
    tokens = sent.tokens[: record["chunks"]]
    assert "".join(tokens) == record["response_text"], "one whole token per chunk, none torn"


@needs_tshark
def test_tls_capture_is_ciphertext_without_its_key_log(monkeypatch: pytest.MonkeyPatch) -> None:
    entry = ENTRIES["tls"]
    monkeypatch.chdir(CORPUS)
    result = CliRunner().invoke(analyze_pcap, [entry.path.name, "--port", str(entry.port), "--jsonl"])
    assert result.exit_code == 0 and result.stdout == ""
    assert all(s.prompt not in result.output for s in entry.sent)


def test_corpus_stays_small_and_complete() -> None:
    files = [p for p in CORPUS.rglob("*") if p.is_file()]
    assert sum(p.stat().st_size for p in files) < CORPUS_BUDGET_BYTES
    for entry in ENTRIES.values():
        assert entry.path.exists() and entry.golden_path.exists(), entry.name
        assert entry.made_with, entry.name
    manifest = json.loads((CORPUS / "manifest.json").read_text("utf-8"))
    assert set(manifest["captures"]) == {"lo4", "lo6", "any4", "null6", "cut", "tls", "proxy", "foreign"}
