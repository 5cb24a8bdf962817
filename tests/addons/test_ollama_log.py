"""The addon with mitmproxy's own test harness (taddons contexts, tflow flows), and bad settings in a real mitmdump."""

from __future__ import annotations

import json
import logging
import subprocess
import time
from pathlib import Path

import pytest
from mitmproxy import exceptions, flow
from mitmproxy.proxy.mode_specs import ProxyMode
from mitmproxy.test import taddons, tflow, tutils

from analyzer.recorder.addon import OllamaLog
from analyzer.recorder.process import MitmdumpProcess, free_port
from analyzer.store.log import read_log
from analyzer.store.writer import wait_until_written

ADDON_PATH = Path(__file__).resolve().parents[2] / "addons" / "ollama_log.py"
TOKENS = ["The", " sky", " is", " blue", " ☁", "."]


def recorder(script) -> OllamaLog:
    """The recorder among the script's addons (feeds such as the export addon come first)."""
    return next(addon for addon in script.addons if isinstance(addon, OllamaLog))


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


def logged(addon, log_dir: Path) -> list:
    """The log once the addon's writer thread has written what it queued (a bounded wait)."""
    assert wait_until_written(addon.writer, 15.0)
    return read_log(log_dir)


@pytest.fixture
def tctx(tmp_path: Path):
    with taddons.context() as loading:
        addon = recorder(loading.script(str(ADDON_PATH)))  # loaded exactly as `mitmdump -s` loads it
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
    (rec,) = logged(addon, log_dir)
    assert rec.response_text == "".join(TOKENS) and rec.prompt == "Why?" and rec.source == "proxy"
    assert rec.complete and rec.id == f.id and rec.server.endswith(":22")  # tserver_conn's address
    assert rec.ttfb_ms is not None and 0 < rec.ttfb_ms <= rec.ttft_ms <= rec.total_ms


def test_non_ollama_traffic_is_untouched(tctx) -> None:
    ctx, addon, log_dir = tctx
    f = tflow.tflow(resp=True)  # GET /path on address:22
    addon.responseheaders(f)
    assert not f.response.stream
    addon.response(f)
    assert logged(addon, log_dir) == []


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
    (rec,) = logged(addon, log_dir)
    assert "client_aborted" in rec.flags and not rec.complete and rec.response_text


def test_upstream_failure_without_response(tctx) -> None:
    ctx, addon, log_dir = tctx
    f = ollama_flow()
    f.response = None
    f.error = flow.Error("Connection refused")
    addon.error(f)
    (rec,) = logged(addon, log_dir)
    assert rec.error == "Connection refused" and {"upstream_failed", "no_response"} <= set(rec.flags)


def test_shutdown_flushes_open_interactions(tctx) -> None:
    ctx, addon, log_dir = tctx
    f = ollama_flow()
    addon.responseheaders(f)
    f.response.stream(ndjson_body(final=False)[:60])
    addon.done()
    (rec,) = logged(addon, log_dir)
    assert "proxy_shutdown" in rec.flags


def test_parser_bug_never_breaks_the_stream(tctx, monkeypatch) -> None:
    ctx, addon, log_dir = tctx
    f = ollama_flow()
    addon.responseheaders(f)
    builder = addon.builders[f.id]
    monkeypatch.setattr(builder, "response_body", lambda *a: 1 / 0)
    body = ndjson_body()
    assert b"".join(stream_through(f, [body[:10], body[10:]])) == body
    addon.response(f)
    (rec,) = logged(addon, log_dir)  # still recorded, and it says why its text is missing
    assert "recorder_error" in rec.flags and not rec.complete and rec.response_text == ""


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
    (rec,) = logged(addon, log_dir)
    assert len(rec.response_text) == 8 and "truncated_body" in rec.flags


# -- which flows count, per proxy mode ---------------------------------------------------------------


def flow_in_mode(mode: str, host: str, port: int, path: str) -> flow.Flow:
    f = ollama_flow(path)
    f.request.host, f.request.port = host, port
    f.client_conn.proxy_mode = ProxyMode.parse(mode)
    return f


@pytest.mark.parametrize(
    ("mode", "host", "port", "path", "hosts", "counts"),
    [
        ("regular", "example.com", 80, "/", [], False),  # any website's home page
        ("regular", "example.com", 80, "/v1/models", [], False),
        ("regular", "example.com", 8080, "/api/generate", [], False),
        ("regular", "gpu-box", 11434, "/api/generate", [], True),  # Ollama's default port
        ("regular", "gpu-box", 11434, "/", [], True),
        ("upstream:http://corp-proxy:3128", "example.com", 443, "/v1/models", [], False),
        ("upstream:http://corp-proxy:3128", "gpu-box", 11434, "/api/chat", [], True),
        ("regular", "gpu-box", 8080, "/api/generate", ["gpu-box:8080"], True),
        ("regular", "gpu-box", 8080, "/", ["gpu-box"], True),
        ("regular", "gpu-box", 11434, "/api/generate", ["gpu-box:8080"], False),  # hosts given: only those
        ("reverse:http://127.0.0.1:8080", "127.0.0.1", 8080, "/", [], True),  # behind a reverse proxy: all
        ("reverse:http://127.0.0.1:8080", "127.0.0.1", 8080, "/elsewhere", [], False),
        ("reverse:http://127.0.0.1:11434", "127.0.0.1", 11434, "/api/chat", ["127.0.0.1:11434"], True),  # upstream
        ("reverse:http://127.0.0.1:11434@11435", "127.0.0.1", 11434, "/api/chat", ["127.0.0.1:11435"], False),
    ],
)
def test_which_flows_count_per_mode(tctx, mode, host, port, path, hosts, counts) -> None:
    ctx, addon, log_dir = tctx
    ctx.configure(addon, ollama_hosts=hosts)
    assert addon.is_ollama(flow_in_mode(mode, host, port, path)) is counts


def test_forward_mode_website_is_neither_streamed_nor_recorded(tctx) -> None:
    ctx, addon, log_dir = tctx
    page = flow_in_mode("regular", "example.com", 80, "/")
    addon.responseheaders(page)
    assert not page.response.stream
    addon.response(page)
    failed = flow_in_mode("regular", "example.com", 80, "/v1/models")
    failed.response, failed.error = None, flow.Error("Connection refused")
    addon.error(failed)
    ollama = flow_in_mode("regular", "127.0.0.1", 11434, "/api/generate")
    addon.responseheaders(ollama)
    stream_through(ollama, [ndjson_body()])
    addon.response(ollama)
    assert [r.path for r in logged(addon, log_dir)] == ["/api/generate"]


# -- settings mitmproxy defers until the script declares them ---------------------------------------


def test_deferred_settings_are_applied_and_bad_ones_reported(caplog) -> None:
    with taddons.context() as tctx:
        tctx.options.set(
            "ollama_max_text=12",
            "ollama_hosts=a:1",
            "ollama_hosts=b",
            "ollama_console=maybe",
            "ollama_redact=bogus",
            "ollama_max_txt=5",
            "other_addon_option=1",
            defer=True,
        )
        with caplog.at_level(logging.ERROR):
            addon = recorder(tctx.script(str(ADDON_PATH)))
        assert tctx.options.ollama_max_text == 12 and tctx.options.ollama_hosts == ["a:1", "b"]
        assert tctx.options.ollama_console is True and tctx.options.ollama_redact == "images"  # defaults kept
        assert set(tctx.options.deferred) == {"other_addon_option"}  # not ours: left to its owner
    console_problem, *others = addon.problems
    # The first is mitmproxy's own parse message, worded differently in 11.x and 12.x.
    assert console_problem.startswith("ollama_console=maybe: ") and '"true"' in console_problem
    assert others == [
        "ollama_redact=bogus: not one of none, images, hash, drop",
        "unknown option ollama_max_txt=5 (did you mean ollama_max_text?)",
    ]
    assert [r.getMessage() for r in caplog.records] == [f"ollama_log: {p}" for p in addon.problems]


BAD_SETTINGS = [
    ("ollama_max_text", "abc"),
    ("ollama_max_text", "0"),
    ("ollama_console", "maybe"),
    ("ollama_redact", "bogus"),
    ("ollama_typo", "1"),
    ("ollama_hosts", "http://127.0.0.1:11434"),
    ("ollama_extra_paths", "api/x"),
]


def _mitmdump(tmp_path: Path, **settings: str) -> MitmdumpProcess:
    upstream = f"http://127.0.0.1:{free_port()}"  # never contacted: no request is made
    return MitmdumpProcess(
        upstream, options={"ollama_log_dir": str(tmp_path / "log"), **settings}, console_path=tmp_path / "console.txt"
    )


@pytest.mark.parametrize(("name", "value"), BAD_SETTINGS)
def test_real_mitmdump_refuses_a_bad_setting_with_one_line(tmp_path: Path, name: str, value: str) -> None:
    proxy = _mitmdump(tmp_path, **{name: value})
    with proxy.console_path.open("wb") as console:
        process = subprocess.Popen(proxy.command(), stdout=console, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        try:
            returncode = process.wait(60)  # a bound, not a speed check: it must exit on its own
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
    output = proxy.console()
    lines = [line for line in output.splitlines() if "ollama_log:" in line]
    assert returncode != 0, output
    assert len(lines) == 1 and f"{name}={value}" in lines[0], output
    assert "Traceback" not in output and not (tmp_path / "log").exists()


def test_real_mitmdump_accepts_good_settings(tmp_path: Path) -> None:
    """The control for the test above: valid values of every kind start normally and exit cleanly."""
    proxy = _mitmdump(
        tmp_path,
        ollama_max_text="100",
        ollama_console="false",
        ollama_redact="hash",
        ollama_hosts="127.0.0.1:11434",
        ollama_extra_paths="/custom/",
    )
    with proxy:
        pass
    assert proxy.process is not None and proxy.process.returncode == 0, proxy.console()
    assert "ollama_log:" not in proxy.console()
