"""Traffic is untrusted: hostile model names, prompts and replies sent through the real proxy (mitmdump + addon,
emulator upstream) and read back through every view a person uses.

The corpus: terminal escapes (retitle, clear screen), OSC 52 (write the clipboard), newlines that would forge a
console line, Rich markup, bidi overrides, NUL, C1 controls, HTML/script, a spreadsheet formula, a 1 MB model
name, invalid UTF-8 in a request body and in a capture. Each view must exit 0, print no traceback and no raw
control byte, and show nothing forged; the log keeps the exact text; exports stay bounded and well-formed.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import ollama
import pytest
from otlp_receiver import OtlpReceiver, attributes, poll
from test_top import Tmux, wait_for_socket

from analyzer.emulator import EmulatorConfig, EmulatorThread
from analyzer.export import semconv as sc
from analyzer.export.labels import LABEL_VALUE_WIDTH, OTHER
from analyzer.protocol.record import InteractionRecord
from analyzer.recorder.process import free_port
from tests.support.defaults import FAST
from tests.support.frames import Conversation, frame_of
from tests.support.pcapfile import pcap_bytes
from tests.support.processes import Mitmdump

pytestmark = pytest.mark.timeout(600)
BIN = Path(sys.executable).parent
OW = str(BIN / "ollama-wire")
MARK = "hostile" + uuid.uuid4().hex[:6]
HUGE = "h" * 1_000_000

# model name -> what the name tries to do. Every name is also put in the prompt and the reply.
HOSTILE = {
    "evil\x1b]0;OWNED\x07\x1b[2J": "retitle the terminal, clear the screen",
    "clip\x1b]52;c;b3duZWQ=\x07": "OSC 52: write the clipboard",
    "m\nollama POST /api/chat forged-line 200 ttft 1ms": "forge a console line",
    "mark[/]up [bold red]x[/]": "Rich markup (crashed top --once)",
    "user\u202egnp.exe\u2066x\u2069": "bidi override and isolate",
    "nul\x00byte": "NUL",
    "csi\x9b2J": "C1 control (CSI)",
    "<script>document.documentElement.setAttribute('data-owned','1')</script>"
    "<img src=x onerror=\"document.documentElement.setAttribute('data-owned','2')\">": "HTML injection",
    '=HYPERLINK("http://127.0.0.1:9/x","y")': "spreadsheet formula",
    "-2+3+cmd|' /C calc'!A0": "formula starting with -",
    "cr\rover": "carriage return overwrite",
    HUGE: "a 1 MB model name",
}
# Raw bytes a terminal acts on (TAB and LF are fine between lines/cells; a view must not print the rest).
RAW_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\u2028\u2029]")
FAST_EXPORT = {
    "OTEL_BSP_SCHEDULE_DELAY": "100",
    "OTEL_METRIC_EXPORT_INTERVAL": "300",
    "OTEL_EXPORTER_OTLP_TIMEOUT": "2",
}


@contextlib.contextmanager
def fast_export() -> Iterator[None]:
    """Export every few hundred ms while the block runs (mitmdump inherits the environment)."""
    saved = {name: os.environ.get(name) for name in FAST_EXPORT}
    os.environ.update(FAST_EXPORT)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@dataclass
class Run:
    emulator: EmulatorThread
    proxy: Mitmdump
    receiver: OtlpReceiver
    prometheus: str
    sock: Path
    records: list[InteractionRecord]
    directory: Path


def _reply(name: str) -> str:
    return "ok" if name is HUGE else f"reply {name} \x1b]52;c;cmVwbHk=\x07 end"


def _send_hostile(proxy: Mitmdump) -> None:
    client = ollama.Client(host=proxy.url, timeout=60)
    for name in HOSTILE:
        prompt = f"{MARK} generate" if name is HUGE else f"{MARK} generate {name}"
        list(client.generate(model=name, prompt=prompt, stream=True, options={"emulator_reply": _reply(name)}))
    for name in list(HOSTILE)[:4]:  # chat too: system message, and the OpenAI-style error quoting the name
        client.chat(
            model=name,
            messages=[{"role": "system", "content": f"sys {name}"}, {"role": "user", "content": f"{MARK} chat {name}"}],
            options={"emulator_reply": _reply(name)},
        )
    # NEL and LINE SEPARATOR: the official client's line reader (httpx iter_lines) splits on them, so raw HTTP
    for name in ("nel\x85line", "sep\u2028line\u2029"):
        raw = json.dumps({"model": name, "prompt": f"{MARK} raw {name}", "options": {"emulator_reply": _reply(name)}})
        urllib.request.urlopen(
            urllib.request.Request(proxy.url + "/api/generate", data=raw.encode()), timeout=30
        ).read()
    # invalid UTF-8 in the request body (a broken or hostile client): Ollama answers 400, the proxy records it
    body = b'{"model":"bad\xff\xfeutf8\x1b[2J","prompt":"' + MARK.encode() + b' invalid \xc3\x28"}'
    request = urllib.request.Request(proxy.url + "/api/generate", data=body, method="POST")
    try:
        urllib.request.urlopen(request, timeout=30).read()
    except urllib.error.HTTPError as exc:
        exc.read()


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    directory = tmp_path_factory.mktemp("hostile")
    sock = directory / "live.sock"
    port = free_port()
    receiver = OtlpReceiver().start()
    with fast_export(), EmulatorThread(EmulatorConfig(**{**FAST, "any_model": True})) as emulator:
        proxy = Mitmdump(
            emulator.url,
            "127.0.0.1",
            directory / "log",
            directory / "console.txt",
            f"ollama_otlp_endpoint={receiver.url}",
            f"ollama_prometheus=127.0.0.1:{port}",
            f"ollama_live={sock}",
            "ollama_export_content=true",
        ).start()
        try:
            _send_hostile(proxy)
            proxy.wait_for(MARK, count=len(HOSTILE) + 6, timeout_s=60)
            # the invalid-UTF-8 request has no readable prompt: it is the 400 among the records
            poll(lambda: [r for r in proxy.records() if r.status == 400], 30, "the invalid UTF-8 request's record")
            records = proxy.records()
            yield Run(emulator, proxy, receiver, f"http://127.0.0.1:{port}/metrics", sock, records, directory)
        finally:
            proxy.stop()
            receiver.stop()


def view(*args: str | Path, timeout_s: float = 180) -> str:
    """Run a command as a person would; it must exit 0 with no traceback and print no raw control character."""
    done = subprocess.run([str(a) for a in args], capture_output=True, timeout=timeout_s, check=False)
    stdout = done.stdout.decode("utf-8")  # strict: a view must print valid UTF-8
    stderr = done.stderr.decode("utf-8")
    command = " ".join(str(a) for a in args[:4])
    assert done.returncode == 0, f"{command}: exit {done.returncode}\n{stderr[-3000:]}"
    assert "Traceback" not in stdout + stderr, f"{command}:\n{stderr[-3000:]}"
    for name, text in (("stdout", stdout), ("stderr", stderr)):
        found = RAW_CONTROL.search(text)
        assert found is None, f"{command}: raw {found.group()!r} on {name} at {found.start()}"
    return stdout


def data(*args: str | Path, timeout_s: float = 180) -> str:
    """Run a command writing data (CSV, JSON): exit 0, no traceback; the text is exact, so not checked for controls."""
    done = subprocess.run([str(a) for a in args], capture_output=True, timeout=timeout_s, check=False)
    stderr = done.stderr.decode("utf-8")
    assert done.returncode == 0 and "Traceback" not in stderr, stderr[-3000:]
    return done.stdout.decode("utf-8")


def no_forged_lines(text: str) -> None:
    """The newline in a model name never starts a line of its own."""
    assert not any(line.lstrip().startswith(("ollama POST /api/chat forged", "POST /api/chat forged")) for line in
                   text.splitlines())  # fmt: skip


def test_the_log_keeps_the_exact_text(run: Run) -> None:
    models = {r.model for r in run.records}
    assert set(HOSTILE) <= models  # exact bytes, escapes and all (JSONL escapes them on disk)
    replies = {r.model: r.response_text for r in run.records if r.kind == "generate" and r.status == 200}
    assert all(replies[name] == _reply(name) for name in HOSTILE)
    assert [r for r in run.records if r.status == 400]  # the invalid UTF-8 body: recorded, answered 400


def test_the_console_line_is_one_escaped_line_per_interaction(run: Run) -> None:
    console = run.proxy.console_path.read_text(encoding="utf-8")
    found = RAW_CONTROL.search(console)
    assert found is None, f"raw {found.group()!r} in the console at {found.start()}"
    no_forged_lines(console)
    lines = [line for line in console.splitlines() if "ollama POST /api/generate" in line]
    assert any("evil\\x1b]0;OWNED\\x07\\x1b[2J" in line for line in lines)
    assert any("m\\nollama POST /api/chat forged-line" in line for line in lines)
    assert all(len(line) < 1000 for line in console.splitlines())  # the 1 MB name is cut


def test_logs_table_summary_and_errors(run: Run) -> None:
    log_dir = run.proxy.log_dir
    table = view(OW, "logs", "--log-dir", log_dir, "-n", "0")
    no_forged_lines(table)
    assert len(table.splitlines()) == len(run.proxy.records()) + 2  # header, rule, one line per record
    assert "mark[/]up [bold red]x[/]" in table and "evil\\x1b]0;OWNED" in table
    assert max(len(line) for line in table.splitlines()) < 1500
    summary = view(OW, "logs", "--log-dir", log_dir, "--summary")
    assert len(summary.splitlines()) == len({r.model or "(none)" for r in run.proxy.records()}) + 2
    view(OW, "logs", "--log-dir", log_dir, "--errors")
    data(OW, "logs", "--log-dir", log_dir, "--summary", "--csv")


def test_csv_is_spreadsheet_safe_and_reads_back_exactly(run: Run) -> None:
    log_dir = run.proxy.log_dir
    csv.field_size_limit(sys.maxsize)  # a cell holds the 1 MB model name
    written = data(OW, "logs", "--log-dir", log_dir, "-n", "0", "--csv")
    rows = list(csv.DictReader(io.StringIO(written, newline="")))
    cells = [value for row in rows for value in row.values() if value]
    assert not [c for c in cells if c[0] in "=+@\t\r" or (c[0] == "-" and not re.fullmatch(r"-[\d.e+-]+", c))]
    assert '\'=HYPERLINK("http://127.0.0.1:9/x","y")' in {row["model"] for row in rows}
    raw = subprocess.run([OW, "logs", "--log-dir", str(log_dir), "-n", "0", "--csv-raw"], capture_output=True)
    assert raw.returncode == 0
    assert '=HYPERLINK("http://127.0.0.1:9/x","y")' in {
        r["model"] for r in csv.DictReader(io.StringIO(raw.stdout.decode(), newline=""))
    }
    # CSV as a SOURCE: the project's reader removes the guard, so the round trip gives the exact text back
    path = run.directory / "all.csv"
    view(OW, "logs", "--log-dir", log_dir, "-n", "0", "--csv", "-o", path)
    report = json.loads(data(OW, "findings", path, "--json"))
    assert set(HOSTILE) - {"nul\x00byte", "cr\rover"} <= set(report["headline"]["models"])


def test_findings_and_its_json(run: Run) -> None:
    text = view(OW, "findings", run.proxy.log_dir)
    no_forged_lines(text)
    assert max(len(line) for line in text.splitlines()) < 1500
    data(OW, "findings", run.proxy.log_dir, "--json")


def test_top_once_shows_markup_as_text(run: Run) -> None:
    screen = view(OW, "top", "--once", "--width", "200", "--log-dir", run.proxy.log_dir, "--live", run.sock,
                  "--ollama", run.emulator.url)  # fmt: skip
    no_forged_lines(screen)
    assert "mark[/]up [bold red]x[/]" in screen or "mark[/]up [bold" in screen


@pytest.mark.skipif(shutil.which("tmux") is None, reason="needs tmux")
def test_top_in_a_terminal_keeps_its_title_and_screen(run: Run) -> None:
    """What a person sees: tmux's pane title is what an OSC 0 would change; the screen must show the names."""
    wait_for_socket(run.sock)
    name = "evil\x1b]0;OWNED\x07\x1b[2J"
    top = Tmux([OW, "top", "--live", str(run.sock), "--log-dir", str(run.proxy.log_dir), "--ollama", run.emulator.url])
    client = ollama.Client(host=run.proxy.url, timeout=60)
    options = {"emulator_reply": "slow " * 60, "emulator_token_ms": 100}
    streaming = threading.Thread(
        target=lambda: list(
            client.generate(model=name, prompt=f"{MARK} running \x1b]0;OWNED2\x07", stream=True, options=options)
        )
    )
    try:
        top.wait_for(lambda s: "live feed" in s, what="the header")
        streaming.start()
        screen = top.wait_for(lambda s: "running \\x1b]0;OWNED2" in s, what="the running hostile request")
        assert "evil\\x1b]0;OWNED" in screen
        streaming.join(60)
        screen = top.wait_for(lambda s: "mark[/]up" in s, what="the finished hostile rows")
        (run.directory / "top-screen.txt").write_text(screen)
        title = subprocess.run(["tmux", "display", "-p", "-t", top.name, "#{pane_title}"], capture_output=True,
                               text=True).stdout  # fmt: skip
        assert "OWNED" not in title
        top.keys("q")
    finally:
        top.close()
        streaming.join(60)


def _capture(path: Path) -> Path:
    """A capture of hostile traffic: escapes and markup in the model, invalid UTF-8 in the request and reply."""
    conv = Conversation()
    request_body = b'{"model":"cap\\u001b]0;OWNED\\u0007 [/]x","prompt":"bad \xff\xfe utf8 \x1b[2J"}'
    model = b'"model":"cap\\u001b]0;OWNED\\u0007 [/]x"'
    reply = (
        b"{" + model + b',"response":"line1\\nforged \\u001b]52;c;eA==\\u0007","done":false}\n'
        b'{"model":"cap\\u001b]0;OWNED\\u0007 [/]x","response":" raw \xff\xc3\x28","done":false}\n'
        b'{"model":"cap\\u001b]0;OWNED\\u0007 [/]x","response":"","done":true,"done_reason":"stop","eval_count":2}\n'
    )
    chunked = b"%x\r\n%s\r\n0\r\n\r\n" % (len(reply), reply)
    segments = [
        *conv.handshake(),
        conv.c(
            b"POST /api/generate HTTP/1.1\r\nHost: ollama\r\nContent-Length: %d\r\n\r\n" % len(request_body)
            + request_body
        ),
        conv.s(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/x-ndjson\r\nTransfer-Encoding: chunked\r\n\r\n" + chunked
        ),
        *conv.close(),
    ]
    path.write_bytes(pcap_bytes([(seg.ts, frame_of(seg)) for seg in segments]))
    return path


def test_analyze_pcap_tables_and_responses(tmp_path: Path) -> None:
    capture = _capture(tmp_path / "hostile.pcap")
    table = view(OW, "analyze", capture)
    assert "cap\\x1b]0;OWNED\\x07 [/]x" in table
    texts = view(OW, "analyze", capture, "--responses")
    assert [line for line in texts.splitlines() if line.startswith("=== ")] and not [
        line for line in texts.splitlines() if line.startswith("forged")
    ]
    assert "  forged \\x1b]52;c;eA==\\x07" in texts
    data(OW, "analyze", capture, "--csv")


def test_capture_status_escapes_the_last_error(tmp_path: Path) -> None:
    from capture_scripts.config import load_config
    from capture_scripts.runner import update_state

    config_path = tmp_path / "capture.yaml"
    config_path.write_text(f"output_dir: {tmp_path}/out\nstate_dir: {tmp_path}/state\nmethod: direct\n")
    update_state(load_config(config_path), last_error="analyzer: model \x1b]0;OWNED\x07\nforged: line",
                 last_error_at=time.time())  # fmt: skip
    status = view(BIN / "ollama-capture", "status", "--config", config_path)
    assert "last error:     analyzer: model \\x1b]0;OWNED\\x07\\nforged: line" in status


def test_otlp_spans_keep_names_and_metrics_stay_clean(run: Run) -> None:
    wanted = {r.id: r for r in run.records}

    def spans() -> dict | None:
        found = {attributes(s.attributes).get(sc.OLLAMA_RECORD_ID): s for _, s in run.receiver.spans()}
        return found if set(wanted) <= set(found) else None

    received = poll(spans, 30, "a span per hostile record")
    for record_id, record in wanted.items():
        if record.model:  # spans carry the exact model name (valid UTF-8 after the record's own sanitising)
            assert attributes(received[record_id].attributes)[sc.REQUEST_MODEL] == record.model

    def model_values() -> set[str] | None:
        metric = run.receiver.last_metrics().get(sc.CLIENT_OPERATION_DURATION)
        if metric is None:
            return None
        values = {attributes(p.attributes).get(sc.REQUEST_MODEL) for p in metric.histogram.data_points}
        return values if len(values) >= len(HOSTILE) else None

    values = poll(model_values, 30, "histogram points for every hostile model")
    for value in filter(None, values):
        assert RAW_CONTROL.search(value) is None and len(value) <= LABEL_VALUE_WIDTH


def test_prometheus_exposition_passes_promtool(run: Run) -> None:
    page = poll(lambda: _scrape(run.prometheus, "mark[/]up"), 30, "the hostile models on /metrics")
    assert RAW_CONTROL.search(page) is None
    assert max(len(line) for line in page.splitlines()) < 2000  # the 1 MB name is cut
    if shutil.which("promtool"):
        checked = subprocess.run(["promtool", "check", "metrics"], input=page, capture_output=True, text=True)
        assert checked.returncode == 0 and not checked.stdout.strip(), checked.stdout + checked.stderr


def _scrape(url: str, needle: str) -> str | None:
    page = urllib.request.urlopen(url, timeout=10).read().decode("utf-8")
    return page if needle in page else None


@pytest.mark.skipif(shutil.which("chromium") is None, reason="needs chromium")
def test_report_in_chromium_runs_no_injected_script(run: Run) -> None:
    page = run.directory / "report.html"
    view(OW, "report", run.proxy.log_dir, "-o", page)
    done = subprocess.run(
        ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--proxy-server=127.0.0.1:9",
         "--host-resolver-rules=MAP * ~NOTFOUND", "--virtual-time-budget=8000", "--dump-dom", page.as_uri()],
        capture_output=True, text=True, timeout=180, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert "data-owned" not in done.stdout.split("<body", 1)[0]  # the <html> element was never touched
    assert 'data-owned="1"' not in done.stdout and 'data-owned="2"' not in done.stdout
    assert "&lt;script&gt;document.documentElement" in done.stdout  # shown as text


def test_a_flood_of_model_names_stays_within_the_label_limit(tmp_path: Path) -> None:
    """1,500 distinct model names: at most ollama_label_limit (+ other) values per label on /metrics and in the
    OTLP metric streams, and the folds counted."""
    port = free_port()
    receiver = OtlpReceiver().start()
    try:
        with fast_export(), EmulatorThread(EmulatorConfig(**{**FAST, "any_model": True, "tokens": 2})) as emulator:
            options = (
                f"ollama_prometheus=127.0.0.1:{port}",
                f"ollama_otlp_endpoint={receiver.url}",
                "ollama_label_limit=50",
                "ollama_live=off",
            )
            proxy = Mitmdump(emulator.url, "127.0.0.1", tmp_path / "log", tmp_path / "console.txt", *options).start()
            try:
                marker = "flood" + uuid.uuid4().hex[:6]

                def send(start: int) -> None:
                    client = ollama.Client(host=proxy.url, timeout=60)
                    for n in range(start, 1500, 4):
                        client.generate(model=f"{marker}-{n}", prompt="x", stream=False)

                threads = [threading.Thread(target=send, args=(k,)) for k in range(4)]
                for thread in threads:
                    thread.start()
                for thread in threads:
                    thread.join(300)
                folded = 'ollama_export_label_values_folded_total{label="gen_ai.request.model"} 1450.0'
                page = poll(lambda: _scrape(f"http://127.0.0.1:{port}/metrics", folded), 60, "1,450 folded values")

                def otlp_models() -> set[str] | None:
                    metric = receiver.last_metrics().get(sc.CLIENT_OPERATION_DURATION)
                    if metric is None:
                        return None
                    points = metric.histogram.data_points
                    if sum(p.count for p in points) < 1500:
                        return None
                    return {attributes(p.attributes).get(sc.REQUEST_MODEL) for p in points}

                streams = poll(otlp_models, 60, "OTLP histogram points for all 1,500 requests")
            finally:
                proxy.stop()
    finally:
        receiver.stop()
    models = set(re.findall(r'gen_ai_request_model="([^"]*)"', page))
    assert len(models) == 51 and OTHER in models
    assert len(streams) == 51 and OTHER in streams
