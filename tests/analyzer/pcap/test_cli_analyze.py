"""The ``analyze-pcap`` command on real captures: output formats, many inputs, the log hand-off, bad input.

Runs the command in-process with click's ``CliRunner`` and, once, as the installed console script.
Needs root, tcpdump and tshark for the captures (skipped otherwise); the bad-input tests need none.
"""

from __future__ import annotations

import csv
import io
import json
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from analyzer.cli.analyze import analyze_pcap
from analyzer.pcap.analyze import AnalyzeOptions, analyze_capture
from analyzer.pcap.ledger import LEDGER_NAME
from analyzer.pcap.segments import TcpSegment
from analyzer.protocol.record import COLUMNS, FLAG_CAPTURE_ENDED_MID_RESPONSE, FLAG_CAPTURE_STARTED_MID_RESPONSE
from analyzer.store.log import log_files, read_log
from tests.support.corpus import CORPUS, entries
from tests.support.damage import response_packets, truncate_last_packet, window
from tests.support.frames import Conversation, frame_of
from tests.support.pcapfile import pcap_bytes, read_pcap, write_pcap
from tests.support.workload import ProxyCapture, RealCapture

ROOT = Path(__file__).resolve().parents[3]

needs_tshark = pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark not installed")
pytestmark = pytest.mark.timeout(180)

DAILY = re.compile(r"\d{4}-\d{2}-\d{2}\.jsonl")
ANALYZE_PCAP = Path(sys.executable).parent / "analyze-pcap"


def run(*args: str | Path) -> Result:
    """The command in-process; stdout and stderr kept apart (click ≥ 8.2)."""
    return CliRunner().invoke(analyze_pcap, [str(a) for a in args], catch_exceptions=False)


def jsonl(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def ports(*captures: RealCapture) -> list[str]:
    out: list[str] = []
    for capture in captures:
        out += ["--port", str(capture.port)]
    return out


def one_line_error(result: Result, name: str) -> str:
    """The stderr line that names ``name``; asserts there is no traceback."""
    assert "Traceback" not in result.stderr + result.stdout
    lines = [line for line in result.stderr.splitlines() if name in line]
    assert len(lines) == 1, f"expected one stderr line naming {name}, got: {result.stderr!r}"
    return lines[0]


# --------------------------------------------------------------------------- captures for this module


@pytest.fixture(scope="module")
def lo4(capture_shapes: dict[str, RealCapture]) -> RealCapture:
    return capture_shapes["lo4"]


@pytest.fixture(scope="module")
def lo6(capture_shapes: dict[str, RealCapture]) -> RealCapture:
    return capture_shapes["lo6"]


@pytest.fixture(scope="module")
def windowed(lo4: RealCapture, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The long stream of lo4 with the capture started mid-response and ended before ``done``."""
    pcap = read_pcap(lo4.path)
    response = response_packets(pcap, lo4.port, lo4.by_name("gen-stream").prompt)
    path = tmp_path_factory.mktemp("windowed") / "windowed.pcap"
    return write_pcap(path, pcap, window(pcap.packets, response[10], response[-10]))


@dataclass
class ForeignCapture:
    """A capture with a raw TCP echo, a request to a non-Ollama path and one Ollama request."""

    path: Path
    echo_port: int
    ollama_port: int
    prompt: str


@pytest.fixture(scope="module")
def foreign() -> ForeignCapture:
    """The corpus capture of a TCP echo, GET /metrics and one generate (tests/data/captures/foreign.pcap)."""
    entry = entries()["foreign"]
    return ForeignCapture(entry.path, entry.extra["echo_port"], entry.port, entry.sent[0].prompt)


# --------------------------------------------------------------------------- output formats


class TestOutputs:
    def test_default_table_is_the_golden(self, lo4: RealCapture, monkeypatch: pytest.MonkeyPatch) -> None:
        """The whole table, byte for byte (tests/data/captures/lo4.table.txt, checked by eye)."""
        monkeypatch.chdir(CORPUS)
        result = run(lo4.path.name, *ports(lo4))
        assert result.exit_code == 0, result.stderr
        assert result.stderr == ""
        assert result.stdout == (CORPUS / "lo4.table.txt").read_text(encoding="utf-8")
        assert len(result.stdout.splitlines()) == 2 + len(lo4.sent)

    def test_jsonl_is_the_library_records(self, lo4: RealCapture) -> None:
        result = run(lo4.path, *ports(lo4), "--jsonl")
        assert result.exit_code == 0, result.stderr
        expected = analyze_capture(lo4.path, AnalyzeOptions(ports=(lo4.port,))).records
        expected.sort(key=lambda r: r.started_at)  # the file's records by start time
        assert jsonl(result.stdout) == [r.to_dict() for r in expected]
        assert all(list(row) == list(COLUMNS) for row in jsonl(result.stdout))

    def test_json_array(self, lo4: RealCapture) -> None:
        result = run(lo4.path, *ports(lo4), "--json")
        assert result.exit_code == 0, result.stderr
        assert json.loads(result.stdout) == jsonl(run(lo4.path, *ports(lo4), "--jsonl").stdout)

    def test_csv_header_is_the_record_columns_and_flags_join_with_semicolons(
        self, windowed: Path, lo4: RealCapture
    ) -> None:
        result = run(windowed, *ports(lo4), "--csv")
        assert result.exit_code == 0, result.stderr
        rows = list(csv.reader(io.StringIO(result.stdout)))
        assert tuple(rows[0]) == COLUMNS
        assert len(rows) == 2
        flags = rows[1][COLUMNS.index("flags")].split(";")
        assert FLAG_CAPTURE_STARTED_MID_RESPONSE in flags
        assert FLAG_CAPTURE_ENDED_MID_RESPONSE in flags

    def test_output_file(self, lo4: RealCapture, tmp_path: Path) -> None:
        out = tmp_path / "records.jsonl"
        result = run(lo4.path, *ports(lo4), "--jsonl", "-o", out)
        assert result.exit_code == 0, result.stderr
        assert result.stdout == ""
        assert jsonl(out.read_text(encoding="utf-8")) == jsonl(run(lo4.path, *ports(lo4), "--jsonl").stdout)

    def test_responses_prints_the_texts(self, lo4: RealCapture, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.chdir(CORPUS)
        result = run(lo4.path.name, *ports(lo4), "--responses")
        assert result.exit_code == 0, result.stderr
        assert result.stdout == (CORPUS / "lo4.responses.txt").read_text(encoding="utf-8")

        def block(text: str) -> str:  # --responses indents every line of a text by two spaces
            return "\n".join("  " + line for line in text.split("\n"))

        for sent in lo4.sent:
            assert block(sent.prompt) in result.stdout
            assert block(sent.text) in result.stdout
            if sent.thinking:
                assert block(sent.thinking) in result.stdout
        assert "[error_mid_stream]" in result.stdout

    @needs_tshark
    def test_engines_agree_through_the_cli(self, lo4: RealCapture) -> None:
        fast = run(lo4.path, *ports(lo4), "--jsonl", "--engine", "fast")
        tshark = run(lo4.path, *ports(lo4), "--jsonl", "--engine", "tshark")
        assert fast.exit_code == tshark.exit_code == 0
        assert jsonl(fast.stdout) == jsonl(tshark.stdout)

    def test_installed_script_as_a_subprocess(self, lo4: RealCapture, lo6: RealCapture) -> None:
        completed = subprocess.run(
            [str(ANALYZE_PCAP), str(lo4.path), str(lo6.path), *ports(lo4, lo6), "--jsonl"],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert completed.returncode == 0, completed.stderr
        in_process = run(lo4.path, lo6.path, *ports(lo4, lo6), "--jsonl")
        assert jsonl(completed.stdout) == jsonl(in_process.stdout)
        assert len(jsonl(completed.stdout)) == len(lo4.sent) + len(lo6.sent)


# --------------------------------------------------------------------------- many inputs


def daily_records(log_dir: Path) -> list[dict]:
    """The records in the log's daily files (``YYYY-MM-DD.jsonl``), oldest file first."""
    files = sorted(p for p in log_dir.glob("*.jsonl") if DAILY.fullmatch(p.name))
    return [json.loads(line) for p in files for line in p.read_text(encoding="utf-8").splitlines() if line]


def capture_dir_of(tmp_path: Path, captures: dict[str, RealCapture]) -> Path:
    """Copies of the captures under the given file names."""
    directory = tmp_path / "captures"
    directory.mkdir()
    for name, capture in captures.items():
        shutil.copyfile(capture.path, directory / name)
    return directory


class TestManyInputs:
    @pytest.fixture
    def directory(self, tmp_path: Path, lo4: RealCapture, lo6: RealCapture) -> Path:
        """The later capture under the name that sorts first."""
        first, later = sorted((lo4, lo6), key=lambda c: read_pcap(c.path).packets[0].ts)
        return capture_dir_of(tmp_path, {"a-later.pcap": later, "b-first.pcap": first})

    @staticmethod
    def expected_order(lo4: RealCapture, lo6: RealCapture) -> list[str]:
        first, later = sorted((lo4, lo6), key=lambda c: read_pcap(c.path).packets[0].ts)
        options = AnalyzeOptions(ports=(lo4.port, lo6.port))
        return [
            r.prompt or ""
            for c in (first, later)
            for r in sorted(analyze_capture(c.path, options).records, key=lambda r: r.started_at)
        ]

    def test_directory_sorted_by_capture_time(self, directory: Path, lo4: RealCapture, lo6: RealCapture) -> None:
        result = run(directory, *ports(lo4, lo6), "--jsonl")
        assert result.exit_code == 0, result.stderr
        assert [r["prompt"] for r in jsonl(result.stdout)] == self.expected_order(lo4, lo6)

    def test_glob_sorted_by_capture_time(self, directory: Path, lo4: RealCapture, lo6: RealCapture) -> None:
        result = run(str(directory / "*.pcap"), *ports(lo4, lo6), "--jsonl")
        assert result.exit_code == 0, result.stderr
        assert [r["prompt"] for r in jsonl(result.stdout)] == self.expected_order(lo4, lo6)

    def test_jobs_two_gives_the_same_records(
        self, directory: Path, lo4: RealCapture, lo6: RealCapture, windowed: Path
    ) -> None:
        shutil.copyfile(windowed, directory / "c-windowed.pcap")
        one = run(directory, *ports(lo4, lo6), "--jsonl", "--jobs", "1")
        two = run(directory, *ports(lo4, lo6), "--jsonl", "--jobs", "2")
        assert one.exit_code == two.exit_code == 0
        assert jsonl(one.stdout) == jsonl(two.stdout)
        assert len(jsonl(one.stdout)) == len(lo4.sent) + len(lo6.sent) + 1

    def test_log_dir_appends_and_a_rerun_skips_analyzed_captures(
        self, tmp_path: Path, lo4: RealCapture, lo6: RealCapture, proxy_capture: ProxyCapture
    ) -> None:
        directory = capture_dir_of(tmp_path, {"lo4.pcap": lo4})
        log_dir = tmp_path / "log"
        args: list[str | Path] = [directory, *ports(lo4, lo6), "--log-dir", log_dir, "--jsonl"]

        first = run(*args)
        assert first.exit_code == 0, first.stderr
        logged = daily_records(log_dir)
        assert logged == jsonl(first.stdout)
        assert len(logged) == len(lo4.sent)
        # the addon's format: daily JSONL files, one compact record per line, the same keys in the same order
        addon_files = log_files(proxy_capture.log_dir)
        our_files = [p for p in log_files(log_dir) if p.name != LEDGER_NAME]
        assert addon_files and our_files
        for path in [*addon_files, *our_files]:
            assert DAILY.fullmatch(path.name)
            assert path.suffix == ".jsonl"
            for line in path.read_text(encoding="utf-8").splitlines():
                keys = list(json.loads(line))
                # the committed addon log was written before this round's columns: its keys are today's columns
                # less the new ones, in today's order (tests/analyzer/test_old_logs.py reads such logs); ours are all
                assert keys == list(COLUMNS if path in our_files else [c for c in COLUMNS if c in keys])
                assert line.startswith('{"id":"')
        assert (log_dir / LEDGER_NAME).exists()

        again = run(*args)
        assert again.exit_code == 0, again.stderr
        assert again.stderr == f"note: 1 capture(s) already in {log_dir}, skipped\n"
        assert jsonl(again.stdout) == []
        assert len(daily_records(log_dir)) == len(lo4.sent)

        shutil.copyfile(lo6.path, directory / "lo6.pcap")
        third = run(*args)
        assert third.exit_code == 0, third.stderr
        assert third.stderr == f"note: 1 capture(s) already in {log_dir}, skipped\n"
        assert sorted(r["prompt"] for r in jsonl(third.stdout)) == sorted(s.prompt for s in lo6.sent)
        assert len(daily_records(log_dir)) == len(lo4.sent) + len(lo6.sent)


def test_log_readers_see_only_the_records_after_log_dir(tmp_path: Path, lo4: RealCapture) -> None:
    log_dir = tmp_path / "log"
    assert run(lo4.path, *ports(lo4), "--log-dir", log_dir).exit_code == 0
    assert [r.to_dict() for r in read_log(log_dir)] == daily_records(log_dir)


# --------------------------------------------------------------------------- damaged and bad input


class TestTruncatedCapture:
    """tcpdump killed while writing: the file ends inside its last packet."""

    @pytest.fixture(params=["fast", pytest.param("tshark", marks=needs_tshark)])
    def engine(self, request: pytest.FixtureRequest) -> str:
        return request.param

    def test_whole_capture_cut_in_last_packet(self, lo4: RealCapture, tmp_path: Path, engine: str) -> None:
        path = tmp_path / "cut.pcap"
        shutil.copyfile(lo4.path, path)
        truncate_last_packet(path)
        result = run(path, *ports(lo4), "--jsonl", "--engine", engine)
        clean = run(lo4.path, *ports(lo4), "--jsonl", "--engine", engine)
        assert result.exit_code == 0, result.stderr
        assert jsonl(result.stdout) == jsonl(clean.stdout)
        warning = one_line_error(result, str(path))
        assert warning.startswith("warning:") and "truncated" in warning

    def test_cut_inside_a_streamed_response(self, lo4: RealCapture, tmp_path: Path, engine: str) -> None:
        """The intact part is analyzed exactly as if the capture had ended one packet earlier."""
        pcap = read_pcap(lo4.path)
        response = response_packets(pcap, lo4.port, lo4.by_name("gen-stream").prompt)
        end = response[len(response) // 2] + 1
        cut = write_pcap(tmp_path / "cut.pcap", pcap, window(pcap.packets, 0, end))
        truncate_last_packet(cut)
        intact = write_pcap(tmp_path / "intact.pcap", pcap, window(pcap.packets, 0, end - 1))
        result = run(cut, *ports(lo4), "--jsonl", "--engine", engine)
        assert result.exit_code == 0, result.stderr
        records = jsonl(result.stdout)
        assert records == jsonl(run(intact, *ports(lo4), "--jsonl", "--engine", engine).stdout)
        assert FLAG_CAPTURE_ENDED_MID_RESPONSE in records[-1]["flags"]
        warning = one_line_error(result, str(cut))
        assert warning.startswith("warning:") and "truncated" in warning


def user0_capture(path: Path) -> Path:
    """A well-formed pcap with link type 147 (USER0), which the fast engine does not decode."""
    path.write_bytes(pcap_bytes([(1_700_000_000.0, b"\x00" * 60)], linktype=147))
    return path


class TestBadInput:
    """One line naming the file, exit 1, no traceback; the other files are still reported."""

    @pytest.fixture
    def bad_files(self, tmp_path: Path) -> dict[str, Path]:
        empty = tmp_path / "empty.pcap"
        empty.write_bytes(b"")
        text = tmp_path / "notes.pcap"
        text.write_text("not a capture, just some notes\n")
        return {"empty": empty, "text": text, "user0": user0_capture(tmp_path / "user0.pcap")}

    @pytest.mark.parametrize(
        ("name", "engine", "message"),
        [
            ("empty", "auto", "empty file (0 bytes): tcpdump may have been stopped before it wrote anything"),
            pytest.param(
                "empty",
                "tshark",
                "empty file (0 bytes): tcpdump may have been stopped before it wrote anything",
                marks=needs_tshark,
            ),
            ("text", "auto", "not a pcap or pcapng capture file (starts with 6e 6f 74 20 61 20 63 61)"),
            pytest.param(
                "text",
                "tshark",
                'tshark exited with status 2: tshark: The file "{path}" isn\'t a capture file in a format TShark '
                "understands.",
                marks=needs_tshark,
            ),
            ("user0", "fast", "unsupported link type 147 (unknown); try --engine tshark"),
        ],
    )
    def test_one_line_error_naming_the_file(
        self, bad_files: dict[str, Path], name: str, engine: str, message: str
    ) -> None:
        path = bad_files[name]
        result = run(path, "--engine", engine)
        assert result.exit_code == 1
        assert (result.stdout, result.stderr) == (
            "no Ollama interactions found\n",
            f"error: {path}: {message.format(path=path)}\n",
        )

    def test_unsupported_link_type_suggests_tshark(self, bad_files: dict[str, Path]) -> None:
        line = one_line_error(run(bad_files["user0"], "--engine", "fast"), str(bad_files["user0"]))
        assert "147" in line and "--engine tshark" in line

    @needs_tshark
    def test_auto_falls_back_to_tshark_for_an_unsupported_link_type(self, bad_files: dict[str, Path]) -> None:
        result = run(bad_files["user0"])
        assert result.exit_code == 0, result.stderr
        warning, note = result.stderr.splitlines()
        assert warning.startswith(f"warning: {bad_files['user0']}") and "reading it with tshark instead" in warning
        assert note == f"note: {bad_files['user0']}: no TCP traffic on port(s) 11434"

    def test_nonexistent_path(self, tmp_path: Path) -> None:
        missing = tmp_path / "nowhere.pcap"
        result = run(missing)
        assert (result.exit_code, result.stdout) == (1, "")
        assert result.stderr == f"error: {missing}: no such file or directory\n"

    def test_nonexistent_path_as_a_subprocess(self, tmp_path: Path) -> None:
        missing = tmp_path / "nowhere.pcap"
        completed = subprocess.run([str(ANALYZE_PCAP), str(missing)], capture_output=True, text=True, timeout=60)
        assert completed.returncode == 1
        assert completed.stdout == ""
        assert [line for line in completed.stderr.splitlines() if line.strip()] == [
            f"error: {missing}: no such file or directory"
        ]

    def test_good_files_still_reported_beside_bad_ones(
        self, bad_files: dict[str, Path], lo4: RealCapture, tmp_path: Path
    ) -> None:
        result = run(bad_files["empty"], lo4.path, bad_files["text"], *ports(lo4), "--jsonl")
        assert result.exit_code == 1
        assert sorted(r["prompt"] for r in jsonl(result.stdout)) == sorted(s.prompt for s in lo4.sent)
        one_line_error(result, str(bad_files["empty"]))
        one_line_error(result, str(bad_files["text"]))


class TestForeignTraffic:
    @pytest.mark.parametrize("engine", ["fast", pytest.param("tshark", marks=needs_tshark)])
    def test_non_http_connection_skipped_and_counted(self, foreign: ForeignCapture, engine: str) -> None:
        result = run(
            foreign.path,
            "--port",
            str(foreign.echo_port),
            "--port",
            str(foreign.ollama_port),
            "--jsonl",
            "--engine",
            engine,
        )
        assert result.exit_code == 0, result.stderr
        assert result.stderr == (
            f"note: {foreign.path}: skipped 1 connection(s) on the port that were not Ollama HTTP and 1 HTTP "
            "request(s) that were not Ollama API calls\n"
        )
        assert [r["prompt"] for r in jsonl(result.stdout)] == [foreign.prompt]

    @pytest.mark.parametrize("engine", ["fast", pytest.param("tshark", marks=needs_tshark)])
    def test_request_to_a_non_ollama_path_is_skipped(self, foreign: ForeignCapture, engine: str) -> None:
        result = run(foreign.path, "--port", str(foreign.ollama_port), "--jsonl", "--engine", engine)
        assert result.exit_code == 0, result.stderr
        records = jsonl(result.stdout)
        assert [(r["path"], r["prompt"]) for r in records] == [("/api/generate", foreign.prompt)]
        assert result.stderr == f"note: {foreign.path}: skipped 1 HTTP request(s) that were not Ollama API calls\n"


@needs_tshark
def test_tshark_engine_with_several_ports(lo4: RealCapture, lo6: RealCapture) -> None:
    """Both captures analyzed with both ports given: tshark must agree with the fast engine."""
    args: list[str | Path] = [lo4.path, lo6.path, *ports(lo4, lo6), "--jsonl"]
    fast, tshark = run(*args, "--engine", "fast"), run(*args, "--engine", "tshark")
    assert fast.exit_code == 0, fast.stderr
    assert tshark.exit_code == 0, tshark.stderr
    assert jsonl(tshark.stdout) == jsonl(fast.stdout)


# --------------------------------------------------------------------------- crafted captures (no root needed)


def _http(head: bytes, body: dict) -> bytes:
    data = json.dumps(body).encode()
    return head + b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(data), data)


def request(path: str, body: dict) -> bytes:
    return _http(b"POST %s HTTP/1.1\r\nHost: ollama\r\n" % path.encode(), body)


def response(body: dict) -> bytes:
    return _http(b"HTTP/1.1 200 OK\r\n", body)


def generate(conv: Conversation, prompt: str, **extra: object) -> tuple[list[TcpSegment], list[TcpSegment]]:
    """A non-streamed /api/generate on ``conv``: (handshake + request, response + close)."""
    asked = [*conv.handshake(), conv.c(request("/api/generate", {"model": "m", "prompt": prompt, **extra}))]
    return asked, [conv.s(response({"model": "m", "response": f"answer to {prompt}", "done": True})), *conv.close()]


def write_capture(path: Path, segments: list[TcpSegment]) -> Path:
    path.write_bytes(pcap_bytes([(seg.ts, frame_of(seg)) for seg in sorted(segments, key=lambda s: s.ts)]))
    return path


@pytest.fixture
def crafted(tmp_path: Path) -> dict[str, Path]:
    """``overlap``: "slow" starts first but "quick" (started later, on a second connection) completes first;
    ``later``: one request "middle" that starts between the two, in a file whose first packet comes later."""
    slow, quick = Conversation(cport=50001, ts=1000.0), Conversation(cport=50002, ts=1000.5)
    slow_asked, _ = generate(slow, "slow")
    quick_asked, quick_answered = generate(quick, "quick")
    slow.ts = 1001.0
    slow_answered = [slow.s(response({"model": "m", "response": "answer to slow", "done": True})), *slow.close()]
    overlap = write_capture(tmp_path / "overlap.pcap", [*slow_asked, *quick_asked, *quick_answered, *slow_answered])
    middle = Conversation(cport=50003, ts=1000.2)
    asked, answered = generate(middle, "middle")
    later = write_capture(tmp_path / "later.pcap", [*asked, *answered])
    return {"overlap": overlap, "later": later}


def prompts(result: Result, fmt: str) -> list[str]:
    assert result.exit_code == 0, result.stderr
    if fmt == "--jsonl":
        return [r["prompt"] for r in jsonl(result.stdout)]
    if fmt == "--json":
        return [r["prompt"] for r in json.loads(result.stdout)]
    if fmt == "--csv":
        return [r["prompt"] for r in csv.DictReader(io.StringIO(result.stdout))]
    return [word for line in result.stdout.splitlines() for word in line.split() if word.startswith("answer")]


class TestOrder:
    """Collected outputs list the whole run by start time; streamed ones go as exchanges complete."""

    def test_library_yields_completion_order(self, crafted: dict[str, Path]) -> None:
        """The premise of the tests below: the capture's exchanges complete in the other order."""
        records = analyze_capture(crafted["overlap"], AnalyzeOptions()).records
        assert [r.prompt for r in records] == ["quick", "slow"]

    @pytest.mark.parametrize("fmt", ["--jsonl", "--csv"])
    def test_streamed_formats_go_in_completion_order(self, crafted: dict[str, Path], fmt: str) -> None:
        result = run(crafted["later"], crafted["overlap"], fmt)
        assert prompts(result, fmt) == ["quick", "slow", "middle"]  # files oldest first, exchanges as they end

    def test_collected_per_file_outputs_sort_within_each_file(self, crafted: dict[str, Path]) -> None:
        result = run(crafted["later"], crafted["overlap"], "--jsonl", "--jobs", "2")
        assert prompts(result, "--jsonl") == ["slow", "quick", "middle"]

    def test_json_sorts_the_whole_run(self, crafted: dict[str, Path]) -> None:
        result = run(crafted["later"], crafted["overlap"], "--json")
        assert prompts(result, "--json") == ["slow", "middle", "quick"]

    def test_table_and_responses_sort_the_whole_run(self, crafted: dict[str, Path]) -> None:
        table = run(crafted["overlap"], crafted["later"])
        assert table.exit_code == 0, table.stderr
        assert [line.split()[1] for line in table.stdout.splitlines()[2:]] == [
            "00:16:40.004",
            "00:16:40.204",
            "00:16:40.504",
        ]
        texts = run(crafted["overlap"], crafted["later"], "--responses").stdout
        assert [line.strip() for line in texts.splitlines() if line.startswith("  answer")] == [
            "answer to slow",
            "answer to middle",
            "answer to quick",
        ]

    def test_csv_with_sqlite_collects_and_sorts_the_whole_run(self, crafted: dict[str, Path], tmp_path: Path) -> None:
        result = run(crafted["later"], crafted["overlap"], "--csv", "--sqlite", tmp_path / "i.db")
        assert prompts(result, "--csv") == ["slow", "middle", "quick"]

    def test_help_documents_the_order(self) -> None:
        help_text = " ".join(run("--help").stdout.split())
        assert "--json list every request of the run by start time" in help_text
        assert "stream each request as its exchange completes" in help_text


class TestMissingInputs:
    """A PATH that names nothing is one error line; the other PATHS are still analyzed; exit 1."""

    def test_missing_file_beside_a_good_one(self, crafted: dict[str, Path], tmp_path: Path) -> None:
        missing = tmp_path / "missing.pcap"
        result = run(missing, crafted["later"], "--jsonl")
        assert result.exit_code == 1
        assert [r["prompt"] for r in jsonl(result.stdout)] == ["middle"]
        assert one_line_error(result, str(missing)) == f"error: {missing}: no such file or directory"

    def test_glob_without_matches_beside_a_good_file(self, crafted: dict[str, Path], tmp_path: Path) -> None:
        pattern = str(tmp_path / "nothing-*.pcap")
        result = run(pattern, crafted["later"], "--jsonl")
        assert result.exit_code == 1
        assert [r["prompt"] for r in jsonl(result.stdout)] == ["middle"]
        assert one_line_error(result, pattern).startswith(f"error: {pattern}: no such file or directory")

    def test_directory_without_captures(self, crafted: dict[str, Path], tmp_path: Path) -> None:
        empty = tmp_path / "notes"
        empty.mkdir()
        (empty / "readme.txt").write_text("no captures here\n")
        result = run(empty, crafted["later"], "--jsonl")
        assert result.exit_code == 1
        assert [r["prompt"] for r in jsonl(result.stdout)] == ["middle"]
        assert one_line_error(result, str(empty)) == f"error: {empty}: no capture files (.pcap, .pcapng, .cap, .dmp)"

    def test_nothing_exists_at_all(self, tmp_path: Path) -> None:
        result = run(tmp_path / "a.pcap", str(tmp_path / "b-*.pcap"), "--csv")
        assert result.exit_code == 1
        assert result.stdout == ""
        assert len(result.stderr.splitlines()) == 2 and "Traceback" not in result.stderr

    def test_no_traffic_on_the_port_is_a_note(self, crafted: dict[str, Path]) -> None:
        result = run(crafted["later"], "--port", "8080", "--port", "9090", "--jsonl")
        assert result.exit_code == 0, result.stderr
        assert result.stdout == ""
        assert one_line_error(result, str(crafted["later"])) == (
            f"note: {crafted['later']}: no TCP traffic on port(s) 8080, 9090"
        )

    def test_traffic_on_the_port_gives_no_note(self, crafted: dict[str, Path]) -> None:
        result = run(crafted["later"], "--jsonl")
        assert result.exit_code == 0 and result.stderr == ""


needs_dev_full = pytest.mark.skipif(not Path("/dev/full").exists(), reason="no /dev/full")


class TestOutputFailures:
    @needs_dev_full
    @pytest.mark.parametrize("fmt", ["--table", "--csv", "--jsonl", "--json", "--responses"])
    def test_output_to_a_full_device(self, crafted: dict[str, Path], fmt: str) -> None:
        result = run(crafted["overlap"], fmt, "-o", "/dev/full")
        assert result.exit_code == 1
        assert one_line_error(result, "/dev/full") == "Error: /dev/full: cannot write: No space left on device"

    def test_log_dir_under_a_regular_file(self, crafted: dict[str, Path], tmp_path: Path) -> None:
        afile = tmp_path / "afile"
        afile.write_text("not a directory\n")
        result = run(crafted["overlap"], "--log-dir", afile / "sub")
        assert result.exit_code == 1
        assert one_line_error(result, str(afile)) == f"Error: {afile / 'sub'}: cannot write: Not a directory"

    def test_log_that_cannot_be_appended_to(self, crafted: dict[str, Path], tmp_path: Path) -> None:
        """The day's log file is a directory: one line naming it; the next file is not analyzed into the log."""
        log_dir = tmp_path / "log"
        (log_dir / "1970-01-01.jsonl").mkdir(parents=True)
        result = run(crafted["overlap"], crafted["later"], "--log-dir", log_dir, "--jsonl")
        assert result.exit_code == 1
        assert "1970-01-01.jsonl" in one_line_error(result, str(log_dir))
        assert not (log_dir / LEDGER_NAME).exists()  # nothing marked analyzed: a rerun tries again


class TestResponses:
    def test_with_a_machine_format_is_a_usage_error(self, crafted: dict[str, Path]) -> None:
        for fmt in ("csv", "json", "jsonl"):
            result = run(crafted["overlap"], "--responses", f"--{fmt}")
            assert result.exit_code == 2
            assert result.stdout == ""
            assert one_line_error(result, "--responses") == f"Error: --responses prints text; drop --{fmt}"

    def test_system_and_tool_calls_are_shown(self, tmp_path: Path) -> None:
        conv = Conversation()
        call = {"function": {"name": "get_weather", "arguments": {"city": "Oslo"}}}
        body = {
            "model": "m",
            "stream": False,
            "messages": [{"role": "system", "content": "Be terse."}, {"role": "user", "content": "Weather?"}],
        }
        answer = {"model": "m", "message": {"role": "assistant", "content": "", "tool_calls": [call]}, "done": True}
        segments = [*conv.handshake(), conv.c(request("/api/chat", body)), conv.s(response(answer)), *conv.close()]
        path = write_capture(tmp_path / "tools.pcap", segments)
        result = run(path, "--responses")
        assert result.exit_code == 0, result.stderr
        assert "--- system\n  Be terse.\n" in result.stdout
        compact = json.dumps([call], separators=(",", ":"))
        assert f"--- tool_calls\n  {compact}\n" in result.stdout

    def test_blocks_are_left_out_when_empty(self, crafted: dict[str, Path]) -> None:
        result = run(crafted["later"], "--responses")
        assert result.exit_code == 0, result.stderr
        assert "--- system" not in result.stdout and "--- tool_calls" not in result.stdout


def test_help_example_uses_the_snapshot_directory() -> None:
    """The example directory is where ollama-capture puts finished snapshots (docs/capture.md)."""
    capture_doc = (ROOT / "docs" / "capture.md").read_text(encoding="utf-8")
    snapshots = re.search(r"Snapshots land in `([^`]+)/ollama-", capture_doc)
    assert snapshots is not None
    assert f"analyze-pcap {snapshots.group(1)} --log-dir" in run("--help").stdout
