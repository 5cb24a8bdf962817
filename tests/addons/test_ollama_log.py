"""The addon with mitmproxy's own test harness: taddons contexts and tflow flows."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from mitmproxy import exceptions, flow
from mitmproxy.test import taddons, tflow, tutils

from analyzer.log import read_log

ADDON_PATH = Path(__file__).resolve().parents[2] / "addons" / "ollama_log.py"
TOKENS = ["The", " sky", " is", " blue", " ☁", "."]


def ndjson_body(tokens: list[str] = TOKENS, *, final: bool = True) -> bytes:
    objs = [{"model": "m:1", "created_at": "x", "response": t, "done": False} for t in tokens]
    if final:
        objs.append(
            {
                "model": "m:1",
                "created_at": "x",
                "response": "",
                "done": True,
                "done_reason": "stop",
                "eval_count": len(tokens),
                "eval_duration": 10**9,
            }
        )
    return b"".join(json.dumps(o, ensure_ascii=False).encode() + b"\n" for o in objs)


def ollama_flow(
    path: str = "/api/generate",
    body: dict | None = None,
    *,
    content_type: str = "application/x-ndjson",
    status: int = 200,
) -> flow.Flow:
    req = tutils.treq(
        method=b"POST",
        path=path.encode(),
        host="127.0.0.1",
        port=11434,
        content=json.dumps(body or {"model": "m:1", "prompt": "Why?"}).encode(),
    )
    resp = tutils.tresp(status_code=status, headers=((b"content-type", content_type.encode()),), content=None)
    now = time.time()
    req.timestamp_start, req.timestamp_end, resp.timestamp_start = now - 0.2, now - 0.19, now - 0.1
    resp.timestamp_end = None  # set by mitmproxy when the response ends; the addon then falls back to the clock
    return tflow.tflow(req=req, resp=resp)


def stream_through(f: flow.Flow, fragments: list[bytes]) -> list[bytes]:
    """Drive the stream callable the way mitmproxy does; return what the client would receive."""
    out = []
    for frag in [*fragments, b""]:
        result = f.response.stream(frag)
        out.extend(result if isinstance(result, list) else [result])
    return out


@pytest.fixture
def tctx(tmp_path: Path):
    with taddons.context() as loading:
        addon = loading.script(str(ADDON_PATH)).addons[0]  # loaded exactly as `mitmdump -s` loads it
    with taddons.context(addon) as tctx:
        tctx.configure(addon, ollama_log_dir=str(tmp_path / "log"))
        yield tctx, addon, tmp_path / "log"


def test_streams_bytes_unchanged_and_records(tctx) -> None:
    ctx, addon, log_dir = tctx
    f = ollama_flow()
    addon.responseheaders(f)
    assert callable(f.response.stream)
    body = ndjson_body()
    fragments = [body[i : i + 5] for i in range(0, len(body), 5)]
    received = stream_through(f, fragments)
    assert b"".join(received) == body
    assert all(r == frag for r, frag in zip(received, fragments, strict=False))  # nothing held back
    addon.response(f)
    (rec,) = read_log(log_dir)
    assert rec.response_text == "".join(TOKENS) and rec.prompt == "Why?" and rec.source == "proxy"
    assert rec.complete and rec.id == f.id and rec.server.endswith(":22")  # tserver_conn's address
    assert rec.ttfb_ms is not None and 0 < rec.ttfb_ms <= rec.ttft_ms <= rec.total_ms


def test_non_ollama_traffic_is_untouched(tctx) -> None:
    ctx, addon, log_dir = tctx
    f = tflow.tflow(resp=True)  # GET /path on address:22
    addon.responseheaders(f)
    assert not f.response.stream
    addon.response(f)
    assert read_log(log_dir) == []


def test_host_filter(tctx) -> None:
    ctx, addon, log_dir = tctx
    ctx.configure(addon, ollama_hosts=["ollama.internal:11434"])
    f = ollama_flow()
    addon.responseheaders(f)
    assert not f.response.stream  # 127.0.0.1 is not the configured host
    ctx.configure(addon, ollama_hosts=["127.0.0.1:11434"])
    addon.responseheaders(f)
    assert callable(f.response.stream)


def test_client_abort_keeps_partial_text(tctx) -> None:
    ctx, addon, log_dir = tctx
    f = ollama_flow()
    addon.responseheaders(f)
    body = ndjson_body(final=False)
    f.response.stream(body[: body.index(b"\n", 40) + 1])
    f.error = flow.Error("Client disconnected.")
    addon.error(f)
    (rec,) = read_log(log_dir)
    assert "client_aborted" in rec.flags and not rec.complete and rec.response_text


def test_upstream_failure_without_response(tctx) -> None:
    ctx, addon, log_dir = tctx
    f = ollama_flow()
    f.response = None
    f.error = flow.Error("Connection refused")
    addon.error(f)
    (rec,) = read_log(log_dir)
    assert rec.error == "Connection refused" and {"upstream_failed", "no_response"} <= set(rec.flags)


def test_shutdown_flushes_open_interactions(tctx) -> None:
    ctx, addon, log_dir = tctx
    f = ollama_flow()
    addon.responseheaders(f)
    f.response.stream(ndjson_body(final=False)[:60])
    addon.done()
    (rec,) = read_log(log_dir)
    assert "proxy_shutdown" in rec.flags


def test_parser_bug_never_breaks_the_stream(tctx, monkeypatch) -> None:
    ctx, addon, log_dir = tctx
    f = ollama_flow()
    addon.responseheaders(f)
    builder = addon.builders[f.id]
    monkeypatch.setattr(builder, "response_body", lambda *a: 1 / 0)
    body = ndjson_body()
    assert b"".join(stream_through(f, [body[:10], body[10:]])) == body


def test_bad_options_are_refused(tctx, tmp_path: Path) -> None:
    ctx, addon, log_dir = tctx
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("x")
    with pytest.raises(exceptions.OptionsError):
        ctx.configure(addon, ollama_log_dir=str(not_a_dir))
    with pytest.raises(exceptions.OptionsError):
        ctx.configure(addon, ollama_redact="everything")


def test_cap_bounds_memory_and_flags(tctx) -> None:
    ctx, addon, log_dir = tctx
    ctx.configure(addon, ollama_max_text=8)
    f = ollama_flow()
    addon.responseheaders(f)
    stream_through(f, [ndjson_body()])
    addon.response(f)
    (rec,) = read_log(log_dir)
    assert len(rec.response_text) == 8 and "truncated_body" in rec.flags
