"""Make the capture corpus again: real captures of the official clients talking to the emulator, and goldens.

Run as root from the checkout (tcpdump, dumpcap, tshark installed):
``.venv/bin/python tests/data/captures/regenerate.py``.
Every capture is checked before it is kept (both engines give identical records, no gap, one record per request;
the cut stream must end mid-response) and made again, a bounded number of times, when the kernel lost packets.
Then ``<name>.records.jsonl`` is written by ``analyze-pcap <file> --port <port> --jsonl``, and the corpus tests run
on the new files; look at the goldens (``git diff``) before committing them. Prompts carry random words, so every
run changes every file.

- ``lo4.pcap`` / ``lo6.pcap``: ``tcpdump -i lo --immediate-mode``, emulator on 127.0.0.1 / ::1, the full workload;
- ``any4.pcapng``: ``dumpcap -i any`` (pcapng, LINUX_SLL), the full workload;
- ``null6.pcap``: lo6 rewritten to macOS ``lo0`` framing (DLT_NULL, AF_INET6 = 30), as ``tcpdump -i lo0`` writes it;
- ``cut.pcap``: ``tcpdump -c N`` stops while a long stream is still being sent (a capture window ending mid-response);
- ``tls.pcap`` + ``tls.keylog``: the ollama client over HTTPS to mitmdump (reverse proxy) in front of the emulator;
- ``proxy.pcap`` + ``proxy-log/``: client → mitmdump with the addon → emulator, both legs, and the addon's log;
- ``foreign.pcap``: a raw TCP echo (not HTTP), a request to a non-Ollama path and one generate.

``regenerate.py --goldens-only`` rewrites only the goldens from the committed captures (after a record column
changed); it needs neither root nor tcpdump.

``lo4.table.txt`` and ``lo4.responses.txt`` are the golden default table and ``--responses`` output of lo4.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[3]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from analyzer.emulator import EmulatorConfig, EmulatorThread  # noqa: E402
from analyzer.pcap.analyze import AnalyzeOptions, analyze_capture  # noqa: E402
from analyzer.recorder.process import MitmdumpProcess  # noqa: E402
from tests.support.corpus import CORPUS, MANIFEST, Entry, entries  # noqa: E402
from tests.support.damage import to_dlt_null  # noqa: E402
from tests.support.defaults import FAST  # noqa: E402
from tests.support.pcapfile import read_pcap, write_pcap  # noqa: E402
from tests.support.rawhttp import raw_exchange  # noqa: E402
from tests.support.tcpdump import CaptureFailed, missing_live_capture, tcpdump, wait_until_stable  # noqa: E402
from tests.support.workload import FULL, Sent, capture_workload, make_proxy_capture, run_workload, step  # noqa: E402

ATTEMPTS = 3
ANALYZE_PCAP = Path(sys.executable).parent / "analyze-pcap"
CUT_STEPS = (step("cut-stream", tokens=200),)
CUT_AFTER_PACKETS = 40
TLS_STEPS = (step("tls-stream", tokens=20), step("tls-chat", kind="chat", stream=False))
PROXY_STEPS = tuple(s for s in FULL if s.name != "gen-big")  # both legs of the big body would double the file


def check(path: Path, ports: tuple[int, ...], sent: list[Sent], **options: Any) -> None:
    """Both engines agree, nothing was lost, every request has its one record (else CaptureFailed)."""
    results = {e: analyze_capture(path, AnalyzeOptions(ports=ports, engine=e, **options)) for e in ("fast", "tshark")}
    fast, tshark = results["fast"], results["tshark"]
    if options.get("tls_keylog") is None and [r.to_dict() for r in fast.records] != [
        r.to_dict() for r in tshark.records
    ]:
        raise CaptureFailed(f"{path.name}: the engines disagree")
    chosen = tshark if options.get("tls_keylog") else fast
    if chosen.error or chosen.stats.gaps:
        raise CaptureFailed(f"{path.name}: {chosen.error or f'{chosen.stats.gaps} gap(s)'}")
    prompts = sorted(r.prompt or "" for r in chosen.records)
    legs = len(prompts) // max(1, len(sent))
    if prompts != sorted(s.prompt for s in sent for _ in range(legs)) or legs == 0:
        raise CaptureFailed(f"{path.name}: records {prompts} for {[s.prompt for s in sent]}")


def attempts(make: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """``make()`` until it passes its checks (bounded)."""
    for attempt in range(1, ATTEMPTS + 1):
        try:
            return make()
        except CaptureFailed as exc:
            print(f"  attempt {attempt}: {exc}", file=sys.stderr)
    raise SystemExit("giving up: the captures kept failing their checks")


def sent_dicts(sent: list[Sent]) -> list[dict[str, Any]]:
    return [s.to_dict() for s in sent]


# --------------------------------------------------------------------------- one function per capture


def linux_lo(work: Path, name: str, host: str) -> dict[str, Any]:
    workload = capture_workload(work, host, {name: "lo"})
    check(workload.files[name], (workload.port,), workload.sent)
    shutil.copyfile(workload.files[name], CORPUS / f"{name}.pcap")
    return {
        "file": f"{name}.pcap",
        "port": workload.port,
        "host": host,
        "made_with": "tcpdump -i lo --immediate-mode",
        "sent": sent_dicts(workload.sent),
    }


@contextlib.contextmanager
def dumpcap(out: Path, capture_filter: str, iface: str = "any") -> Iterator[None]:
    """``dumpcap -i IFACE -f FILTER -w OUT`` (pcapng) around a block; bounded start and stop."""
    log = out.with_suffix(".log")
    with log.open("wb") as err:
        proc = subprocess.Popen(
            ["dumpcap", "-i", iface, "-f", capture_filter, "-B", "64", "-w", str(out)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err,
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 15
            while b"Capturing on" not in log.read_bytes():
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise CaptureFailed(f"dumpcap did not start: {log.read_text(errors='replace')}")
                time.sleep(0.05)
            yield
            wait_until_stable(out)
        finally:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(15)


def any_pcapng(work: Path) -> dict[str, Any]:
    config = EmulatorConfig(**FAST)
    out = work / "any4.pcapng"
    with EmulatorThread(config) as emulator, dumpcap(out, f"tcp port {emulator.port}"):
        sent = run_workload(emulator.url, config)
    check(out, (emulator.port,), sent)
    shutil.copyfile(out, CORPUS / "any4.pcapng")
    return {
        "file": "any4.pcapng",
        "port": emulator.port,
        "host": "127.0.0.1",
        "made_with": "dumpcap -i any (pcapng, LINUX_SLL)",
        "sent": sent_dicts(sent),
    }


def macos_null(lo6: dict[str, Any]) -> dict[str, Any]:
    write_pcap(CORPUS / "null6.pcap", to_dlt_null(read_pcap(CORPUS / lo6["file"])))
    made_with = "lo6.pcap rewritten to DLT_NULL (macOS lo0, AF_INET6 = 30), as tcpdump -i lo0 writes it"
    return {"file": "null6.pcap", "port": lo6["port"], "host": lo6["host"], "made_with": made_with, "sent_from": "lo6"}


def cut_stream(work: Path) -> dict[str, Any]:
    config = EmulatorConfig(**FAST)
    out = work / "cut.pcap"
    with (
        EmulatorThread(config) as emulator,
        tcpdump(out, f"tcp port {emulator.port}", extra=("-c", str(CUT_AFTER_PACKETS))),
    ):
        sent = run_workload(emulator.url, config, CUT_STEPS)
    result = analyze_capture(out, AnalyzeOptions(ports=(emulator.port,)))
    if len(result.records) != 1 or "capture_ended_mid_response" not in result.records[0].flags:
        raise CaptureFailed(f"cut.pcap: not cut mid-response: {[r.flags for r in result.records]}")
    shutil.copyfile(out, CORPUS / "cut.pcap")
    return {
        "file": "cut.pcap",
        "port": emulator.port,
        "host": "127.0.0.1",
        "made_with": f"tcpdump -i lo --immediate-mode -c {CUT_AFTER_PACKETS} (stopped mid-response)",
        "sent": sent_dicts(sent),
    }


def tls(work: Path) -> dict[str, Any]:
    config = EmulatorConfig(**FAST)
    keylog = work / "tls.keylog"
    keylog.unlink(missing_ok=True)
    out = work / "tls.pcap"
    os.environ["SSLKEYLOGFILE"] = str(keylog)  # httpx (the ollama client's transport) writes the TLS secrets
    try:
        with (
            EmulatorThread(config) as emulator,
            MitmdumpProcess(emulator.url, addon=None, console_path=work / "tls-mitmdump.log") as front,
            tcpdump(out, f"tcp port {front.port}"),
        ):
            https = front.url.replace("http://", "https://")
            sent = run_workload(https, config, TLS_STEPS, ollama_options={"verify": False})
    finally:
        del os.environ["SSLKEYLOGFILE"]
    check(out, (front.port,), sent, tls_keylog=keylog, tls_ports=(front.port,))
    shutil.copyfile(out, CORPUS / "tls.pcap")
    shutil.copyfile(keylog, CORPUS / "tls.keylog")
    return {
        "file": "tls.pcap",
        "port": front.port,
        "host": "127.0.0.1",
        "made_with": "tcpdump -i lo --immediate-mode; ollama client over HTTPS to mitmdump (reverse) → emulator",
        "tls_keylog": "tls.keylog",
        "sent": sent_dicts(sent),
    }


def proxy(work: Path) -> dict[str, Any]:
    made = make_proxy_capture(work, PROXY_STEPS)
    check(made.path, (made.emulator_port,), made.sent)
    check(made.path, (made.proxy_port,), made.sent)
    shutil.copyfile(made.path, CORPUS / "proxy.pcap")
    target = CORPUS / "proxy-log"
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(made.log_dir, target)
    return {
        "file": "proxy.pcap",
        "port": made.emulator_port,
        "host": "127.0.0.1",
        "made_with": "tcpdump -i lo --immediate-mode; official clients → mitmdump -s addons/ollama_log.py → emulator",
        "proxy_port": made.proxy_port,
        "log_dir": "proxy-log",
        "sent": sent_dicts(made.sent),
    }


class EchoServer:
    """Echoes one connection's bytes back until the client closes (loopback only): traffic that is not HTTP."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        try:
            conn, _ = self.sock.accept()
        except OSError:
            return
        with conn:
            conn.settimeout(10)
            while data := conn.recv(4096):
                conn.sendall(data)

    def close(self) -> None:
        self.sock.close()
        self.thread.join(10)


def foreign(work: Path) -> dict[str, Any]:
    config = EmulatorConfig(**FAST)
    out = work / "foreign.pcap"
    echo = EchoServer()
    try:
        with EmulatorThread(config) as emulator, tcpdump(out, f"tcp port {echo.port} or tcp port {emulator.port}"):
            with socket.create_connection(("127.0.0.1", echo.port), timeout=10) as conn:
                conn.sendall(b"hello, echo\n")
                if conn.recv(100) != b"hello, echo\n":
                    raise CaptureFailed("the echo server did not echo")
            if raw_exchange((emulator.host, emulator.port), "GET", "/metrics").status != 404:
                raise CaptureFailed("/metrics answered")
            sent = run_workload(emulator.url, config, (step("foreign-neighbour", stream=False, tokens=8),))
    finally:
        echo.close()
    shutil.copyfile(out, CORPUS / "foreign.pcap")
    return {
        "file": "foreign.pcap",
        "port": emulator.port,
        "host": "127.0.0.1",
        "made_with": "tcpdump -i lo --immediate-mode; a TCP echo, GET /metrics and one generate",
        "echo_port": echo.port,
        "sent": sent_dicts(sent),
    }


# --------------------------------------------------------------------------- goldens


def write_golden(entry: Entry) -> None:
    """``analyze-pcap ... --jsonl`` run in the corpus folder (so the arguments hold no absolute paths)."""
    argv = [str(ANALYZE_PCAP), *entry.golden_argv()]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=True, cwd=CORPUS)
    entry.golden_path.write_text(done.stdout, encoding="utf-8")


def write_manifest(captures: dict[str, dict[str, Any]]) -> None:
    """manifest.json with one line per capture field and per request (small, readable diffs)."""

    def line(value: Any) -> str:
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))

    parts = []
    for name, entry in captures.items():
        fields = [f"  {line(k)}: {line(v)}" for k, v in entry.items() if k != "sent"]
        if "sent" in entry:
            fields.append('  "sent": [\n' + ",\n".join("   " + line(s) for s in entry["sent"]) + "\n  ]")
        parts.append(f" {line(name)}: {{\n" + ",\n".join(fields) + "\n }")
    MANIFEST.write_text('{"captures": {\n' + ",\n".join(parts) + "\n}}\n", encoding="utf-8")


def write_goldens() -> None:
    """Every golden from the captures as they are (after a record column changed; no root needed)."""
    for entry in entries().values():
        write_golden(entry)
    lo4 = entries()["lo4"]
    for suffix, extra in (("table.txt", ()), ("responses.txt", ("--responses",))):
        argv = [str(ANALYZE_PCAP), lo4.path.name, "--port", str(lo4.port), *extra]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=True, cwd=CORPUS)
        (CORPUS / f"lo4.{suffix}").write_text(done.stdout, encoding="utf-8")


def main() -> None:
    if sys.argv[1:] == ["--goldens-only"]:
        write_goldens()
        return
    missing = missing_live_capture(("tcpdump", "dumpcap", "tshark"))
    if missing:
        raise SystemExit(f"regenerate.py: {missing}")
    captures: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="corpus-") as tmp:
        work = Path(tmp)
        os.chmod(work, 0o755)  # tcpdump may drop to its own user
        print("lo4, lo6 ...", file=sys.stderr)
        captures["lo4"] = attempts(lambda: linux_lo(work, "lo4", "127.0.0.1"))
        captures["lo6"] = attempts(lambda: linux_lo(work, "lo6", "::1"))
        print("any4 ...", file=sys.stderr)
        captures["any4"] = attempts(lambda: any_pcapng(work))
        captures["null6"] = macos_null(captures["lo6"])
        print("cut, tls, proxy ...", file=sys.stderr)
        captures["cut"] = attempts(lambda: cut_stream(work))
        captures["tls"] = attempts(lambda: tls(work))
        captures["proxy"] = attempts(lambda: proxy(work))
        captures["foreign"] = attempts(lambda: foreign(work))
    write_manifest(captures)
    write_goldens()
    total = sum(p.stat().st_size for p in CORPUS.rglob("*") if p.is_file())
    print(f"corpus: {len(captures)} captures, {total / 1024:.0f} KiB in {CORPUS}; running its tests", file=sys.stderr)
    tests = ["tests/analyzer/pcap/test_corpus.py", "tests/analyzer/pcap/test_analyze.py"]
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *tests], cwd=ROOT, check=False
    )
    if done.returncode != 0:
        # Seen once in five runs here, while other test suites loaded the machine.
        raise SystemExit("the new corpus fails its tests: run regenerate.py again (or git checkout tests/data)")


if __name__ == "__main__":
    main()
