"""Bad input on every CLI path ends as one clear line naming the file: non-zero exit where appropriate, no
traceback, no hang. The real installed commands run as subprocesses with a bound on their run time."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent
BOUND_S = 60  # a command still running after this is a hang


# Root reads any file; without these capabilities it obeys permission bits like everyone else.
NO_DAC = ["setpriv", "--bounding-set=-dac_override,-dac_read_search"]


def run(*argv: str, without_dac: bool = False) -> subprocess.CompletedProcess[str]:
    prefix = NO_DAC if without_dac else []
    return subprocess.run(
        [*prefix, str(BIN / argv[0]), *argv[1:]], capture_output=True, text=True, timeout=BOUND_S,
        stdin=subprocess.DEVNULL,
    )  # fmt: skip


def assert_clean_failure(done: subprocess.CompletedProcess[str], *names: str) -> None:
    assert done.returncode != 0, done
    assert "Traceback" not in done.stderr, done.stderr
    for name in names:
        assert name in done.stderr, (name, done.stderr)


def test_analyze_pcap_dev_zero_ends_with_one_line() -> None:
    done = run("analyze-pcap", "/dev/zero")
    assert_clean_failure(done, "/dev/zero: not a regular file (a character device)")
    assert len([line for line in done.stderr.splitlines() if line.startswith("error:")]) == 1


def test_analyze_pcap_fifo_does_not_block(tmp_path: Path) -> None:
    fifo = tmp_path / "live.pcap"
    os.mkfifo(fifo)  # nobody ever writes to it: opening it for reading would wait for ever
    done = run("analyze-pcap", str(fifo))
    assert_clean_failure(done, f"{fifo}: not a regular file (a FIFO)")
    done = run("analyze-pcap", str(tmp_path))  # a directory holding it: the FIFO is not a capture file
    assert_clean_failure(done, str(tmp_path))


def test_logs_with_a_fifo_named_like_a_log_file_does_not_block(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    os.mkfifo(logs / "2026-01-01.jsonl")
    done = run("ollama-wire", "logs", "--log-dir", str(logs))
    assert done.returncode == 0 and "Traceback" not in done.stderr and f"no interactions in {logs}" in done.stdout


def test_capture_directory_with_thousands_of_files(tmp_path: Path) -> None:
    for i in range(2000):
        (tmp_path / f"snap{i:04d}.pcap").write_bytes(b"not a capture %d\n" % i)
    done = run("analyze-pcap", str(tmp_path))
    assert_clean_failure(done)
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 2000 and all(str(tmp_path) in line and "not a pcap" in line for line in errors)


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("setpriv") is None, reason="needs root and setpriv")
def test_unreadable_files_name_the_file(tmp_path: Path) -> None:
    capture = tmp_path / "secret.pcap"
    capture.write_bytes(b"\xd4\xc3\xb2\xa1" + bytes(20))
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "2026-01-01.jsonl").write_text("{}\n")
    for path in (capture, logs / "2026-01-01.jsonl"):
        path.chmod(0)
    done = run("analyze-pcap", str(capture), without_dac=True)
    assert_clean_failure(done, str(capture), "Permission denied")
    done = run("ollama-wire", "logs", "--log-dir", str(logs), without_dac=True)
    assert_clean_failure(done, str(logs / "2026-01-01.jsonl"), "Permission denied")


def test_logs_half_written_last_line_is_one_warning(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    good = {"id": "a", "source": "proxy", "started_at": "2026-01-01T00:00:00.000000Z", "path": "/api/generate"}
    first = json.dumps(good) + "\n"
    (logs / "2026-01-01.jsonl").write_text(first + '{"id": "b", "sour')
    done = run("ollama-wire", "logs", "--log-dir", str(logs))
    assert done.returncode == 0 and "Traceback" not in done.stderr
    # `logs` reads from the end of the log, so the line is named by its byte offset
    expected = f"warning: {logs}/2026-01-01.jsonl: byte {len(first)}: skipped a line that is not JSON"
    assert done.stderr.splitlines() == [expected]


def test_logs_directory_full_of_non_json(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    for day in range(1, 4):
        (logs / f"2026-01-0{day}.jsonl").write_bytes(b"\x00garbage \xff\n" * 500)
    done = run("ollama-wire", "logs", "--log-dir", str(logs))
    assert_clean_failure(done, f"Error: {logs}: no interaction records")
    assert len(done.stderr.splitlines()) <= 3 * 4 + 1  # a few lines per file, the rest folded with a count
    assert f"{logs}/2026-01-02.jsonl: skipped 497 more line(s)" in done.stderr


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"interface: lo\nports: [11434\n", "YAML syntax error"),
        (b"\xd4\x00\xffbinary", "not a YAML text file"),
        (b"ports: nope\n", "ports"),
    ],
)
def test_capture_config_errors_are_one_line(tmp_path: Path, content: bytes, expected: str) -> None:
    config = tmp_path / "capture.yaml"
    config.write_bytes(content)
    done = run("ollama-capture", "status", "--config", str(config))
    assert_clean_failure(done, str(config), expected)
    assert len(done.stderr.strip().splitlines()) == 1
