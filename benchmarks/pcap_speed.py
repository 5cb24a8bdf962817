"""How fast are the pcap engines? Builds a ~100k-packet Ollama capture on loopback and times, in one run:

- ``tshark -T fields`` plain field export (the yardstick every ratio is against),
- pyshark per-packet iteration (on a subset, scaled),
- the ``tshark`` engine's and the ``fast`` engine's segment iteration (in this process),
- ``analyze-pcap --engine fast|tshark|auto --csv -o /dev/null`` as subprocesses, with peak RSS,

and the analyze runs again on a capture ten times larger, to show peak RSS stays flat.

Needs root (tcpdump on ``lo``), tcpdump, tshark, editcap, mergecap. Captures are cached under
``benchmarks/.cache/`` (delete it to rebuild). Run: ``python benchmarks/pcap_speed.py [--quick]``.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from analyzer.pcap.tshark_engine import find_tshark, iter_tshark_segments  # noqa: E402
from tests.support.defaults import OLLAMA_PORT  # noqa: E402
from tests.support.processes import free_port  # noqa: E402
from tests.support.tcpdump import tcpdump  # noqa: E402

CACHE = Path(__file__).resolve().parent / ".cache"
BIN = Path(sys.executable).parent
TOKENS = 500


# --------------------------------------------------------------------------- servers


@contextmanager
def emulator_server() -> Iterator[int]:
    """The project's emulator (``ollama-wire emulate``, its own process) on Ollama's port if free, else any."""
    exe = BIN / "ollama-wire"
    port = free_port(preferred=OLLAMA_PORT)
    proc = subprocess.Popen(
        [str(exe), "emulate", "--port", str(port), "--token-ms", "0", "--prefill-ms", "0",
         "--tokens", str(TOKENS), "--think-tokens", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    assert proc.stdout is not None
    try:
        line = proc.stdout.readline()
        if "listening" not in line:
            raise RuntimeError(f"emulator did not start: {line!r}")
        yield port
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(10)


def one_stream(port: int) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    body = json.dumps({"model": "llama3.2:1b", "prompt": "count to five hundred"})
    conn.request("POST", "/api/generate", body=body, headers={"Content-Type": "application/json"})
    resp = conn.getresponse()
    resp.read()
    conn.close()


# --------------------------------------------------------------------------- building captures


def capture_streams(out: Path, streams: int) -> None:
    """Run ``streams`` generate requests against a local server while tcpdump records them."""
    with emulator_server() as port, tcpdump(out, f"tcp port {port}"), ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda _: one_stream(port), range(streams)))


def count_packets(path: Path) -> int:
    out = subprocess.run(["capinfos", "-c", "-M", str(path)], capture_output=True, text=True).stdout
    for line in out.splitlines():
        if "Number of packets" in line:
            return int(line.split(":")[1].strip())
    # capinfos missing: count with tshark
    proc = subprocess.run([find_tshark(), "-r", str(path), "-T", "fields", "-e", "frame.number"],
                          capture_output=True)  # fmt: skip
    return proc.stdout.count(b"\n")


def capture_duration(path: Path) -> float:
    first = last = None
    for seg in iter_tshark_segments(path, {server_port(path)}):
        first = seg.ts if first is None else first
        last = seg.ts
    return (last or 0.0) - (first or 0.0)


def server_port(path: Path) -> int:
    meta = path.with_suffix(".port")
    return int(meta.read_text())


def build_capture(packets: int) -> Path:
    """A capture of about ``packets`` packets (cached)."""
    CACHE.mkdir(exist_ok=True)
    path = CACHE / f"ollama-{packets}.pcap"
    if path.exists() and path.with_suffix(".port").exists():
        return path
    trial = CACHE / "trial.pcap"
    port = run_capture(trial, 8)
    per_stream = max(1, count_packets(trial) // 8)
    trial.unlink()
    streams = max(1, -(-packets // per_stream))
    print(f"building {path.name}: {streams} streams x {TOKENS} tokens (~{per_stream} packets each)")
    port = run_capture(path, streams)
    path.with_suffix(".port").write_text(str(port))
    print(f"cached {path} ({count_packets(path)} packets, server port {port})")
    return path


def run_capture(out: Path, streams: int) -> int:
    """Capture and return the server port (read back from the first SYN)."""
    capture_streams(out, streams)
    proc = subprocess.run(
        [find_tshark(), "-r", str(out), "-c", "1", "-Y", "tcp.flags.syn==1 && tcp.flags.ack==0",
         "-T", "fields", "-e", "tcp.dstport"],
        capture_output=True, text=True,
    )  # fmt: skip
    return int(proc.stdout.split()[0])


def build_times_ten(small: Path) -> Path:
    """Ten time-shifted copies of ``small`` merged into one capture (cached)."""
    big = small.with_name(small.stem + "-x10.pcap")
    if big.exists():
        return big
    shift = capture_duration(small) + 1.0
    parts = []
    for i in range(10):
        part = CACHE / f"part{i}.pcap"
        subprocess.run(["editcap", "-t", f"{i * shift:.6f}", str(small), str(part)], check=True)
        parts.append(part)
    subprocess.run(["mergecap", "-F", "pcap", "-w", str(big), *map(str, parts)], check=True)
    for part in parts:
        part.unlink()
    shutil.copy(small.with_suffix(".port"), big.with_suffix(".port"))
    return big


# --------------------------------------------------------------------------- measurements


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def tshark_field_export(path: Path) -> None:
    with open(os.devnull, "wb") as null:
        subprocess.run(
            [find_tshark(), "-r", str(path), "-T", "fields", "-e", "frame.time_epoch", "-e", "tcp.stream",
             "-e", "tcp.seq", "-e", "tcp.payload"],
            stdout=null, stderr=subprocess.DEVNULL, check=True,
        )  # fmt: skip


def pyshark_iteration(path: Path, limit: int) -> int:
    """Iterate up to ``limit`` packets with pyshark; returns how many were read."""
    import pyshark

    cap = pyshark.FileCapture(str(path), keep_packets=False)
    n = 0
    try:
        for _packet in cap:
            n += 1
            if n >= limit:
                break
    finally:
        cap.close()
    return n


def tshark_engine(path: Path, port: int) -> int:
    return sum(1 for _ in iter_tshark_segments(path, {port}))


def fast_engine(path: Path, port: int) -> int | None:
    try:
        from analyzer.pcap.captures import iter_packets
        from analyzer.pcap.linklayer import segments_from_packets
    except ImportError:
        return None
    return sum(1 for _ in segments_from_packets(iter_packets(str(path)), {port}))


def analyze_run(path: Path, port: int, engine: str) -> tuple[float, int] | None:
    """Time ``analyze-pcap`` in a subprocess; (seconds, peak RSS KiB of it and its children) or None."""
    exe = BIN / "analyze-pcap"
    if not exe.exists():
        return None
    # A fresh wrapper per run so RUSAGE_CHILDREN's maxrss belongs to this run alone.
    wrapper = (
        "import resource, subprocess, sys, time\n"
        "t = time.perf_counter()\n"
        "rc = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode\n"
        "print(rc, time.perf_counter() - t, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
    )
    cmd = [str(exe), str(path), "--engine", engine, "--csv", "-o", "/dev/null"]
    if port != OLLAMA_PORT:
        usage = subprocess.run([str(exe), "--help"], capture_output=True, text=True).stdout
        option = next((o for o in ("--port", "--server-port", "--ports") if o in usage), None)
        if option is None:
            return None
        cmd += [option, str(port)]
    out = subprocess.run([sys.executable, "-c", wrapper, *cmd], capture_output=True, text=True).stdout
    rc, seconds, rss = out.split()
    if rc != "0":
        return None
    return float(seconds), int(rss)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--packets", type=int, default=100_000, help="approximate capture size")
    parser.add_argument("--quick", action="store_true", help="small smoke run (~5k packets)")
    parser.add_argument("--pyshark-limit", type=int, default=5000, help="packets pyshark reads (scaled)")
    args = parser.parse_args()
    if args.quick:
        args.packets = min(args.packets, 5000)
        args.pyshark_limit = min(args.pyshark_limit, 1000)
    if os.geteuid() != 0 or not shutil.which("tcpdump") or not shutil.which("mergecap"):
        print("needs root, tcpdump, tshark, editcap and mergecap", file=sys.stderr)
        return 2

    small = build_capture(args.packets)
    big = build_times_ten(small)
    port = server_port(small)
    rows: list[tuple[str, str, float | None, int | None]] = []

    for label, path in (("1x", small), ("10x", big)):
        total = count_packets(path)
        base = timed(lambda p=path: tshark_field_export(p))
        rows.append((label, f"tshark -T fields export ({total} packets)", base, None))
        if label == "1x":
            limit = min(args.pyshark_limit, total)
            start = time.perf_counter()
            read = pyshark_iteration(path, limit)
            scaled = (time.perf_counter() - start) * total / max(read, 1)
            rows.append((label, f"pyshark FileCapture iteration (first {read}, scaled)", scaled, None))
        rows.append((label, "tshark engine: iter_tshark_segments", timed(lambda p=path: tshark_engine(p, port)), None))
        fast_start = time.perf_counter()
        fast_ok = fast_engine(path, port) is not None
        rows.append((label, "fast engine: segments_from_packets", time.perf_counter() - fast_start if fast_ok else None,
                     None))  # fmt: skip
        for engine in ("fast", "tshark", "auto"):
            result = analyze_run(path, port, engine)
            name = f"analyze-pcap --engine {engine} --csv"
            rows.append((label, name, result[0], result[1]) if result else (label, name, None, None))
        print_table(rows, base, label)
        rows.clear()
    return 0


def print_table(rows: list[tuple[str, str, float | None, int | None]], base: float, label: str) -> None:
    print(f"\n== capture {label} ==")
    print(f"{'measurement':60} {'seconds':>9} {'vs export':>9} {'peak RSS':>10}")
    for _label, name, seconds, rss in rows:
        if seconds is None:
            print(f"{name:60} {'not available':>9}")
            continue
        rss_text = f"{rss / 1024:.0f} MiB" if rss else ""
        print(f"{name:60} {seconds:9.2f} {seconds / base:8.2f}x {rss_text:>10}")


if __name__ == "__main__":
    sys.exit(main())
