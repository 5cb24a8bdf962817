"""The privileged helper's validation, command line and installed form (no root needed)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from capture_scripts import helper, install
from tests.support.pcapfile import pcap_bytes

IFACES = {"lo", "eth0", "any"}


def test_valid_arguments_build_a_fixed_tcpdump_command() -> None:
    opts = helper.parse_capture_args(
        ["--interface", "lo", "--duration", "30", "--port", "11434", "--port", "8080", "--port", "11434"],
        IFACES,
        allowed_ports=(11434, 8080),
    )
    assert opts == helper.CaptureRequest(interface="lo", duration=30, ports=(11434, 8080), name=None)
    argv = helper.tcpdump_argv("/usr/bin/tcpdump", "lo", [11434, 8080], "tcpdump")
    assert argv == [
        "/usr/bin/tcpdump", "-i", "lo", "--immediate-mode", "-n", "-s", "0", "-U", "-w", "-",
        "-Z", "tcpdump", "--", "tcp port 11434 or tcp port 8080",
    ]  # fmt: skip


@pytest.mark.parametrize(
    "args",
    [
        [],
        ["--interface", "lo", "--duration", "30"],
        ["--interface", "lo", "--duration", "30", "--port", "11434", "-z", "x"],
        ["--interface", "wlan9", "--duration", "30", "--port", "11434"],
        ["--interface", "lo", "--duration", "601", "--port", "11434"],
        ["--interface", "lo", "--duration", "٣", "--port", "11434"],
        ["--interface", "lo", "--duration", "30", "--port", "11434", "--name", "a/b.pcap"],
        ["--interface", "lo", "--duration", "30", "--port", "11434", "--name", "x.pcapng"],
        ["--interface", "lo", "--interface", "eth0", "--duration", "30", "--port", "11434"],
        ["--interface", "lo", "--duration", "30", "--port"],
        ["--interface", "lo", "--duration", "30", "--port", "22"],  # not a port setup allowed
        ["--interface", "lo", "--duration", "30", "--port", "11434", "--port", "5432"],
    ],
)
def test_invalid_arguments_are_refused(args: list[str]) -> None:
    with pytest.raises(helper.Refused):
        helper.parse_capture_args(args, IFACES)


def test_main_refuses_unknown_commands(capsys: pytest.CaptureFixture[str]) -> None:
    assert helper.main(["shell"]) == helper.EXIT_REFUSED
    assert helper.main(["check", "extra"]) == helper.EXIT_REFUSED
    assert "refused" in capsys.readouterr().err


def test_machine_interfaces_include_loopback() -> None:
    assert ({"lo", "lo0"} & helper.machine_interfaces()) != set()


def test_rendered_helper_bakes_in_settings_and_isolated_shebang(tmp_path: Path) -> None:
    text = install.render_helper(Path("/var/spool/x"), 120, "/usr/bin/python3")
    assert text.startswith("#!/usr/bin/python3 -I\n")
    assert "SPOOL_DIR = '/var/spool/x'\nMAX_DURATION = 120\n" in text
    script = tmp_path / "helper"
    script.write_text(text)
    script.chmod(0o755)
    env = {"PYTHONPATH": str(tmp_path), "PYTHONSTARTUP": "/nonexistent", "PATH": "/usr/bin:/bin"}
    (tmp_path / "json.py").write_text("raise SystemExit('injected')\n")  # -I must ignore this
    done = subprocess.run([str(script), "capture", "--duration", "121"], capture_output=True, text=True, env=env)
    assert done.returncode == 2 and "injected" not in done.stderr


def test_helper_imports_only_the_standard_library() -> None:
    import ast
    import sys

    tree = ast.parse(install.helper_source())
    names = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    names |= {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    assert names <= set(sys.stdlib_module_names) | {"__future__"}


def test_sudoers_template_has_one_source() -> None:
    """The packaged template is the rule; sudoers/ only points at it (no copy to keep in sync)."""
    root = Path(__file__).resolve().parents[2]
    assert sorted(p.name for p in (root / "sudoers").iterdir()) == ["README.md"]
    readme = (root / "sudoers" / "README.md").read_text()
    link = "../capture_scripts/templates/ollama-capture.sudoers"
    assert f"]({link})" in readme
    assert (root / "sudoers" / link).resolve().read_text() == install.template("ollama-capture.sudoers")


@pytest.mark.skipif(shutil.which("visudo") is None and not os.path.exists("/usr/sbin/visudo"), reason="no visudo")
def test_rendered_sudoers_passes_visudo(tmp_path: Path) -> None:
    text = install.render_sudoers("alice", Path("/usr/local/libexec/ollama-wire/h"), Path("/var/spool/o"), 600)
    assert "tcpdump" not in text.split("Cmnd_Alias")[1] and "timeout" not in text.split("Cmnd_Alias")[1]
    rule = tmp_path / "rule"
    rule.write_text(text)
    visudo = shutil.which("visudo") or "/usr/sbin/visudo"
    done = subprocess.run([visudo, "-c", "-f", str(rule)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr + done.stdout


@pytest.mark.parametrize("bad", ["al ice", "alice\nroot ALL=(ALL) ALL", "a,b", "%admin"])
def test_sudoers_refuses_unsafe_user_names(bad: str) -> None:
    with pytest.raises(install.SetupError):
        install.render_sudoers(bad, Path("/usr/local/libexec/h"), Path("/var/spool/o"), 600)


def test_sudoers_file_name_is_one_sudo_reads() -> None:
    assert install.sudoers_file_name("john.doe") == "ollama-capture-john_doe"


def test_setup_print_shows_every_file() -> None:
    from click.testing import CliRunner

    from capture_scripts.cli import cli

    result = CliRunner().invoke(cli, ["setup", "--user", "nobody", "--print"])
    assert result.exit_code == 0, result.output
    assert "file /usr/local/libexec/ollama-wire/ollama-capture-helper  mode 0755" in result.output
    assert "file /etc/sudoers.d/ollama-capture-nobody  mode 0440" in result.output
    assert "nobody ALL = (root) NOPASSWD: OLLAMA_CAPTURE_NOBODY" in result.output
    assert "directory /var/spool/ollama-wire/.partial  mode 0700" in result.output


# --- disk use: per-capture size cap, reservations, outbox quota ---

MiB = 1024**2


def test_size_cap_is_an_equal_share_above_the_reserve() -> None:
    reserve, slots = helper.MIN_FREE_BYTES, helper.MAX_CONCURRENT
    assert helper.capture_size_cap(reserve + slots * 100 * MiB) == 100 * MiB
    assert helper.capture_size_cap(reserve + slots * 100 * MiB, promised=slots * 40 * MiB) == 60 * MiB
    assert helper.capture_size_cap(10**15) == helper.MAX_FILE_BYTES == 2 * 1024**3
    assert helper.capture_size_cap(reserve) == 0
    assert helper.capture_size_cap(reserve // 2) == 0  # never negative (and then refused)


def test_size_caps_never_take_the_disk_below_the_reserve() -> None:
    """Staggered starts, each capture writing its whole share: free space stays above the reserve throughout."""
    free = helper.MIN_FREE_BYTES + 3000 * MiB
    running: list[list[int]] = []  # [limit, written]
    for step in range(200):
        if len(running) == helper.MAX_CONCURRENT or step % 3 == 2:
            limit, written = running.pop(step % len(running))  # one finishes after writing everything it may
            free -= limit - written
        promised = sum(limit - written for limit, written in running)
        limit = helper.capture_size_cap(free, promised)
        running.append([limit, 0])
        for capture in running:  # everyone writes half of what is left to them
            chunk = (capture[0] - capture[1]) // 2
            capture[1] += chunk
            free -= chunk
        assert free - sum(limit - written for limit, written in running) >= helper.MIN_FREE_BYTES
    assert free >= helper.MIN_FREE_BYTES


def _hold_slot(partial: Path, name: str, content: str) -> int:
    """Create a slot file with a reservation and hold its lock, as a running helper does."""
    import fcntl

    (partial / name).write_text(content)
    fd = os.open(partial / name, os.O_RDWR)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    return fd


def test_promised_bytes_counts_only_running_captures(tmp_path: Path) -> None:
    partial = tmp_path / ".partial"
    partial.mkdir()
    (partial / "a.pcap.11.partial").write_bytes(b"x" * 300)
    held = [
        _hold_slot(partial, "slot-1000-0.lock", "1000 a.pcap.11.partial\n"),  # wrote 300 of 1000
        _hold_slot(partial, "slot-1001-0.lock", "500 b.pcap.12.partial\n"),  # partial not created yet
    ]
    (partial / "slot-1000-1.lock").write_text("99999 c.pcap.13.partial\n")  # stale: nobody holds it
    dir_fd = os.open(partial, os.O_RDONLY | os.O_DIRECTORY)
    try:
        assert helper.promised_bytes(dir_fd, "slot-1002-0.lock") == 700 + 500
        assert helper.promised_bytes(dir_fd, "slot-1000-0.lock") == 500  # its own slot is not counted
        held.append(_hold_slot(partial, "slot-1003-0.lock", "garbage"))  # unreadable: assume the worst
        assert helper.promised_bytes(dir_fd, "slot-1002-0.lock") == 1200 + helper.MAX_FILE_BYTES
    finally:
        for fd in [*held, dir_fd]:
            os.close(fd)


class _Vfs:
    def __init__(self, free: int) -> None:
        self.f_bavail, self.f_frsize = free // 4096, 4096


def test_reserve_capture_records_the_limit_and_refuses_without_space(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    partial = tmp_path / ".partial"
    partial.mkdir()
    other = _hold_slot(partial, "slot-1000-0.lock", f"{40 * MiB} x.pcap.1.partial\n")
    dir_fd = os.open(partial, os.O_RDONLY | os.O_DIRECTORY)
    free = helper.MIN_FREE_BYTES + 440 * MiB
    monkeypatch.setattr(helper.os, "fstatvfs", lambda fd: _Vfs(free))
    try:
        slot_fd, limit = helper.reserve_capture(dir_fd, os.getuid(), "y.pcap.2.partial")
        assert limit == (440 - 40) * MiB // helper.MAX_CONCURRENT == 100 * MiB
        slot = next(p for p in partial.glob(f"slot-{os.getuid()}-*.lock"))
        assert slot.read_text() == f"{limit} y.pcap.2.partial\n"
        os.close(slot_fd)
        free = helper.MIN_FREE_BYTES + 42 * MiB  # 2 MiB left after the other capture's 40: 0.5 MiB each
        with pytest.raises(helper.EnvironmentProblem, match=r"not enough free space.*40 MiB reserved"):
            helper.reserve_capture(dir_fd, os.getuid(), "z.pcap.3.partial")
    finally:
        os.close(other)
        os.close(dir_fd)


def test_outbox_quota(tmp_path: Path) -> None:
    outbox = tmp_path / "alice"
    outbox.mkdir()
    fd = os.open(outbox, os.O_RDONLY | os.O_DIRECTORY)
    try:
        helper.check_outbox(fd, "outbox", max_files=1, max_bytes=100)  # empty: fine
        (outbox / "a.pcap").write_bytes(b"x" * 60)
        helper.check_outbox(fd, "outbox", max_files=2, max_bytes=100)
        with pytest.raises(helper.EnvironmentProblem, match=r"outbox outbox is full: it holds 1 file\(s\)"):
            helper.check_outbox(fd, "outbox", max_files=1, max_bytes=100)
        (outbox / "b.pcap").write_bytes(b"x" * 60)
        with pytest.raises(helper.EnvironmentProblem, match=r"limit 10 files or 0\.0 MiB"):
            helper.check_outbox(fd, "outbox", max_files=10, max_bytes=100)
        (outbox / "link.pcap").symlink_to("/dev/zero")  # counted as an entry, never followed
        helper.check_outbox(fd, "outbox", max_files=10, max_bytes=121)
    finally:
        os.close(fd)


def test_full_outbox_refuses_the_capture_before_anything_is_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import pwd

    spool = tmp_path / "spool"
    spool.mkdir(mode=0o755)
    user = pwd.getpwuid(os.getuid()).pw_name
    (spool / ".partial").mkdir(mode=0o700)
    (spool / user).mkdir(mode=0o700)
    (spool / user / "ollama-20250101T000000Z.pcap").write_bytes(b"\xd4\xc3\xb2\xa1" + bytes(20))
    monkeypatch.delenv("SUDO_UID", raising=False)
    monkeypatch.setattr(helper, "SPOOL_DIR", str(spool))
    monkeypatch.setattr(helper, "MAX_OUTBOX_FILES", 1)
    monkeypatch.setattr(helper, "find_tcpdump", lambda: "/nonexistent/tcpdump")
    before = sorted(str(p.relative_to(spool)) for p in spool.rglob("*"))
    lo = "lo" if "lo" in helper.machine_interfaces() else "lo0"
    status = helper.main(["capture", "--interface", lo, "--duration", "1", "--port", "11434"])
    assert status == helper.EXIT_ENV
    err = capsys.readouterr().err
    assert f"outbox {spool}/{user} is full: it holds 1 file(s)" in err and "nothing was captured" in err
    assert sorted(str(p.relative_to(spool)) for p in spool.rglob("*")) == before


def _pcap(records: list[bytes], order: str = "<") -> bytes:
    return pcap_bytes([(1.000002, r) for r in records], big_endian=order == ">")


@pytest.mark.parametrize("order", ["<", ">"])
def test_whole_records_finds_the_end_of_the_last_complete_packet(tmp_path: Path, order: str) -> None:
    data = _pcap([b"a" * 10, b"b" * 20, b"c" * 30], order)
    path = tmp_path / "x.pcap"
    path.write_bytes(data)
    fd = os.open(path, os.O_RDONLY)
    try:
        assert helper.whole_records(fd, len(data)) == (len(data), 3)
        cut = len(data) - 5  # the last packet cut off, as at the size limit
        assert helper.whole_records(fd, cut) == (24 + 26 + 36, 2)
        assert helper.whole_records(fd, 24 + 26 + 8) == (24 + 26, 1)  # cut inside a record header
    finally:
        os.close(fd)
    path.write_bytes(b"not a pcap file at all, no")
    fd = os.open(path, os.O_RDONLY)
    try:
        assert helper.whole_records(fd, path.stat().st_size) is None
    finally:
        os.close(fd)


def test_size_limit_makes_writes_fail_instead_of_killing_the_capture(tmp_path: Path) -> None:
    """RLIMIT_FSIZE with SIGXFSZ ignored: the writer gets EFBIG (and exits normally), the file stops at the limit."""
    head = shutil.which("head") or "/usr/bin/head"
    out = os.open(tmp_path / "out", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        rc, err, early = helper.run_tcpdump([head, "-c", "300000", "/dev/zero"], out, 60, limit=100_000)
        assert os.fstat(out).st_size == 100_000
    finally:
        os.close(out)
    assert rc != -signal.SIGXFSZ and rc == 1 and not early
    assert "File too large" in err


def test_rendered_helper_bakes_in_the_outbox_quota() -> None:
    text = install.render_helper(Path("/var/spool/x"), 120, "/usr/bin/python3", (11434,), 7, 5 * MiB)
    assert f"ALLOWED_PORTS = (11434,)\nMAX_OUTBOX_FILES = 7\nMAX_OUTBOX_BYTES = {5 * MiB}\n" in text


# --- setup refuses ports in the ephemeral range ---


def test_ephemeral_ports_respect_the_range_and_reserved_ports(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "range").write_text("32768\t60999\n")
    (tmp_path / "reserved").write_text("40000-40002,50001\n")
    monkeypatch.setattr(install, "PORT_RANGE_FILE", tmp_path / "range")
    monkeypatch.setattr(install, "RESERVED_PORTS_FILE", tmp_path / "reserved")
    assert install.ephemeral_ports((11434, 40001, 50000, 50001, 60999, 61000, 32767)) == [50000, 60999]
    assert "ephemeral port range 32768-60999" in install.ephemeral_port_message([50000])
    (tmp_path / "reserved").write_text("\n")
    assert install.ephemeral_ports((40000,)) == [40000]


def test_setup_refuses_a_port_in_the_ephemeral_range(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from click.testing import CliRunner

    from capture_scripts.cli import cli

    (tmp_path / "range").write_text("32768 60999\n")
    monkeypatch.setattr(install, "PORT_RANGE_FILE", tmp_path / "range")
    monkeypatch.setattr(install, "RESERVED_PORTS_FILE", tmp_path / "none")
    refused = CliRunner().invoke(cli, ["setup", "--user", "nobody", "--print", "--port", "40000"])
    assert refused.exit_code == 1
    assert "refusing: port 40000 is in this machine's ephemeral port range 32768-60999" in refused.output
    assert "--allow-ephemeral-port" in refused.output and "# =====" not in refused.output
    allowed = CliRunner().invoke(
        cli, ["setup", "--user", "nobody", "--print", "--port", "40000", "--allow-ephemeral-port"]
    )
    assert allowed.exit_code == 0, allowed.output
    assert "warning: port 40000 is in this machine's ephemeral port range" in allowed.output
    assert "ALLOWED_PORTS = (40000,)" in allowed.output
    default = CliRunner().invoke(cli, ["setup", "--user", "nobody", "--print", "--max-outbox-files", "3"])
    assert default.exit_code == 0 and "warning" not in default.output  # 11434 is outside the range
    assert "MAX_OUTBOX_FILES = 3\nMAX_OUTBOX_BYTES = 2147483648\n" in default.output


@pytest.mark.root
@pytest.mark.live
@pytest.mark.skipif(os.geteuid() != 0, reason="needs root (tcpdump)")
def test_capture_reaching_its_size_limit_still_delivers_a_valid_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Real tcpdump, flooded past a small cap: it keeps running, the helper trims the cut-off packet."""
    import functools
    import json
    import socket
    import threading

    from capture_scripts.snapshot import count_packets

    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]
    spool = tmp_path / "spool"
    spool.mkdir(mode=0o755)
    monkeypatch.delenv("SUDO_UID", raising=False)
    monkeypatch.setattr(helper, "SPOOL_DIR", str(spool))
    monkeypatch.setattr(helper, "MAX_FILE_BYTES", 200_000)
    monkeypatch.setattr(helper, "MIN_CAPTURE_BYTES", 1)
    monkeypatch.setattr(
        helper, "parse_capture_args", functools.partial(helper.parse_capture_args, allowed_ports=(port,))
    )
    stop = threading.Event()

    def sink() -> None:
        conn, _ = server.accept()
        with conn:
            while conn.recv(1 << 16):
                pass

    def flood() -> None:
        with socket.create_connection(("127.0.0.1", port)) as client:
            for _ in range(5000):  # bounded; runs for the whole capture
                if stop.wait(0.005):
                    break
                client.sendall(b"x" * 30000)

    threads = [threading.Thread(target=sink, daemon=True), threading.Thread(target=flood, daemon=True)]
    handlers = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}
    for thread in threads:
        thread.start()
    try:
        lo = "lo" if "lo" in helper.machine_interfaces() else "lo0"
        status = helper.main(["capture", "--interface", lo, "--duration", "3", "--port", str(port)])
    finally:
        for signum, handler in handlers.items():
            signal.signal(signum, handler)
        stop.set()
        for thread in threads:
            thread.join(timeout=30)
        server.close()
    captured = capsys.readouterr()
    assert status == helper.EXIT_OK, captured.err
    summary = json.loads(captured.out.splitlines()[-1])
    assert summary["size_limit"] == 200_000 and summary["size_limit_reached"] is True
    path = Path(summary["path"])
    size = path.stat().st_size
    assert size == summary["bytes"] <= 200_000
    assert summary["packets_captured"] == count_packets(path) > 0
    fd = os.open(path, os.O_RDONLY)
    try:
        assert helper.whole_records(fd, size) == (size, summary["packets_captured"])  # nothing cut off
    finally:
        os.close(fd)
    if shutil.which("tshark"):
        read = subprocess.run(["tshark", "-r", str(path)], capture_output=True, text=True)
        assert read.returncode == 0 and "cut short" not in read.stderr, read.stderr


# -- powermetrics (macOS resource sampling) -------------------------------------------------------------------


def test_powermetrics_arguments_build_a_fixed_command() -> None:
    assert helper.parse_powermetrics_args(["--interval", "200", "--duration", "3"]) == {"interval": 200, "duration": 3}
    assert helper.parse_powermetrics_args(["--duration", "3", "--interval", "250"]) == {"interval": 250, "duration": 3}
    argv = helper.powermetrics_argv("/usr/bin/powermetrics", 200, 3, ane_sampler=True)
    assert argv == [
        "/usr/bin/powermetrics", "--samplers", "cpu_power,gpu_power,ane_power", "-i", "200", "-n", "15", "-f", "plist",
    ]  # fmt: skip
    assert helper.powermetrics_argv("/usr/bin/powermetrics", 300, 1, ane_sampler=False)[2:7] == [
        "cpu_power,gpu_power", "-i", "300", "-n", "4",
    ]  # fmt: skip


@pytest.mark.parametrize(
    "args",
    [
        [],
        ["--interval", "200"],
        ["--interval", "99", "--duration", "1"],
        ["--interval", "10001", "--duration", "1"],
        ["--interval", "200", "--duration", "0"],
        ["--interval", "200", "--duration", "601"],
        ["--interval", "200", "--interval", "300"],
        ["--interval", "200", "--duration", "1", "--samplers", "tasks"],
        ["--samplers", "tasks", "--duration", "1"],
        ["--interval", "2e2", "--duration", "1"],
        ["--interval", "200", "--duration", "1;id"],
        ["-o", "/etc/passwd", "--duration", "1"],
    ],
)
def test_powermetrics_arguments_are_refused(args: list[str]) -> None:
    with pytest.raises(helper.Refused):
        helper.parse_powermetrics_args(args)


@pytest.mark.skipif(os.path.exists("/usr/bin/powermetrics"), reason="this machine has powermetrics")
def test_powermetrics_without_the_program_is_an_environment_problem(capsys: pytest.CaptureFixture[str]) -> None:
    assert helper.main(["powermetrics", "--interval", "200", "--duration", "1"]) == helper.EXIT_ENV
    assert "no root-owned powermetrics in /usr/bin/powermetrics" in capsys.readouterr().err
    assert helper.main(["powermetrics", "--interval", "5", "--duration", "1"]) == helper.EXIT_REFUSED


def test_run_bounded_stops_a_program_that_outlives_its_duration(tmp_path: Path) -> None:
    """In a child interpreter (run_bounded installs signal handlers): a never-ending writer is stopped."""
    code = (
        "import sys\n"
        "from capture_scripts import helper\n"
        "forever = [sys.executable, '-c', 'import time\\nwhile True:\\n    print(1, flush=True); time.sleep(0.05)']\n"
        "helper.SAFE_ENV = {'PATH': '/usr/bin:/bin'}\n"
        "sys.exit(0 if helper.run_bounded(forever, 1) == -2 else 1)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("1\n") > 5  # its output went to our standard output while it ran


@pytest.mark.skipif(os.geteuid() != 0, reason="the helper only runs a root-owned powermetrics")
def test_powermetrics_subcommand_streams_what_the_program_prints(tmp_path: Path) -> None:
    """A stand-in /usr/bin/powermetrics (root-owned, in a temp dir): the helper's argv, -h probe and pass-through."""
    fake = tmp_path / "powermetrics"
    fake.write_text(
        "#!/bin/sh\n"
        'if [ "$1" = "-h" ]; then echo "samplers: cpu_power gpu_power ane_power thermal tasks"; exit 0; fi\n'
        'printf "%s\\n" "$*" >&2\n'
        "printf '<plist><dict><key>elapsed_ns</key><integer>1</integer></dict></plist>\\000'\n"
    )
    fake.chmod(0o755)
    code = (
        "import sys\n"
        "from capture_scripts import helper\n"
        f"helper.POWERMETRICS_CANDIDATES = ({str(fake)!r},)\n"
        "sys.exit(helper.main(['powermetrics', '--interval', '250', '--duration', '2']))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, timeout=60, cwd=Path(__file__).resolve().parents[2]
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr.decode().strip() == "--samplers cpu_power,gpu_power,ane_power -i 250 -n 8 -f plist"
    assert done.stdout == b"<plist><dict><key>elapsed_ns</key><integer>1</integer></dict></plist>\x00"
