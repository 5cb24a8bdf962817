"""``ollama-wire proxy`` / ``addon-path``: argument parsing, the mitmdump command line, one-line errors.

The end-to-end runs (a wheel in a fresh venv, a real client, Ctrl-C) are in tests/e2e/test_installed_package.py.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from analyzer.cli.main import cli
from analyzer.recorder.foreground import ProxyPlan, check_not_itself, is_loopback, parse_listen, parse_upstream
from analyzer.recorder.process import ADDON_PATH, ProxyError

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("127.0.0.1:11435", ("127.0.0.1", 11435)),
        ("localhost:0", ("localhost", 0)),
        ("[::1]:11435", ("::1", 11435)),
        ("0.0.0.0:8080", ("0.0.0.0", 8080)),
    ],
)
def test_parse_listen(value: str, expected: tuple[str, int]) -> None:
    assert parse_listen(value) == expected


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("11435", "'11435' is not HOST:PORT (e.g. 127.0.0.1:11435 or [::1]:11435)"),
        ("host:", "'host:' is not HOST:PORT (e.g. 127.0.0.1:11435 or [::1]:11435)"),
        ("host:x1", "'host:x1' is not HOST:PORT (e.g. 127.0.0.1:11435 or [::1]:11435)"),
        ("host:70000", "'host:70000': port 70000 is out of range"),
        ("::1:11435", "'::1:11435': put an IPv6 address in brackets, e.g. [::1]:11435"),
    ],
)
def test_parse_listen_refuses(value: str, message: str) -> None:
    with pytest.raises(ValueError) as caught:
        parse_listen(value)
    assert str(caught.value) == message


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("http://127.0.0.1:11434", "http://127.0.0.1:11434"),
        ("http://127.0.0.1:11434/", "http://127.0.0.1:11434"),
        ("https://ollama.example", "https://ollama.example"),
        ("127.0.0.1", "http://127.0.0.1:11434"),  # like OLLAMA_HOST: no scheme means port 11434
        ("gpu-box:8000", "http://gpu-box:8000"),
        ("[::1]", "http://[::1]:11434"),
    ],
)
def test_parse_upstream(value: str, expected: str) -> None:
    assert parse_upstream(value) == expected


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("ftp://host", "'ftp://host' is not an http:// or https:// URL"),
        ("http://", "'http://' is not an http:// or https:// URL"),
        ("http://host:port", "'http://host:port' has an invalid port"),
    ],
)
def test_parse_upstream_refuses(value: str, message: str) -> None:
    with pytest.raises(ValueError) as caught:
        parse_upstream(value)
    assert str(caught.value) == message


def test_mitmdump_command_line_puts_user_options_last() -> None:
    extra = ("--set", "flow_detail=1", "--set", "ollama_console=false")
    plan = ProxyPlan("::1", 11435, "http://127.0.0.1:11434", extra)
    assert plan.listen == "[::1]:11435"
    assert plan.argv("/x/mitmdump") == [
        "/x/mitmdump",
        "--mode",
        "reverse:http://127.0.0.1:11434@::1:11435",
        "-s",
        str(ADDON_PATH),
        "--set",
        "flow_detail=0",
        "--set",
        "flow_detail=1",
        "--set",
        "ollama_console=false",
    ]


@pytest.fixture
def busy_port() -> Iterator[int]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


def test_port_in_use_is_one_line(busy_port: int) -> None:
    result = CliRunner().invoke(cli, ["proxy", "--listen", f"127.0.0.1:{busy_port}"])
    assert result.exit_code == 1
    assert result.output == (
        f"Error: cannot listen on 127.0.0.1:{busy_port}: the port is in use (another proxy? choose one with --listen)\n"
    )


def test_bad_listen_is_a_usage_error() -> None:
    result = CliRunner().invoke(cli, ["proxy", "--listen", "nonsense"])
    assert result.exit_code == 2
    assert result.output.splitlines()[-1] == (
        "Error: Invalid value for '--listen': 'nonsense' is not HOST:PORT (e.g. 127.0.0.1:11435 or [::1]:11435)"
    )


def test_addon_path_prints_the_packaged_script() -> None:
    result = CliRunner().invoke(cli, ["addon-path"])
    assert result.exit_code == 0
    assert result.output == f"{ADDON_PATH}\n"
    assert ADDON_PATH.name == "mitmproxy_script.py" and ADDON_PATH.is_file()


@pytest.mark.parametrize(
    ("host", "loopback"),
    [("127.0.0.1", True), ("127.1.2.3", True), ("::1", True), ("localhost", True), ("0.0.0.0", False),
     ("::", False), ("192.168.1.5", False), ("gpu-box", False)],
)  # fmt: skip
def test_is_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


@pytest.mark.parametrize(
    ("listen", "upstream", "loops"),
    [
        ("127.0.0.1:11435", "http://127.0.0.1:11435", True),
        ("127.0.0.1:11435", "http://localhost:11435", True),
        ("0.0.0.0:8080", "http://127.0.0.1:8080", True),
        ("[::1]:80", "http://[::1]", True),
        ("127.0.0.1:11435", "http://127.0.0.1:11434", False),
        ("127.0.0.1:11435", "http://gpu-box:11435", False),
        ("127.0.0.1:443", "http://127.0.0.1", False),
    ],
)
def test_an_upstream_that_is_the_proxy_itself_is_refused(listen: str, upstream: str, loops: bool) -> None:
    host, port = parse_listen(listen)
    plan = ProxyPlan(host, port, upstream)
    if not loops:
        check_not_itself(plan)
        return
    with pytest.raises(ProxyError) as caught:
        check_not_itself(plan)
    assert str(caught.value) == f"--upstream {upstream} is the proxy's own --listen {plan.listen}: requests would loop"


def test_a_looping_proxy_is_one_line_before_anything_starts() -> None:
    result = CliRunner().invoke(cli, ["proxy", "--listen", "127.0.0.1:11435", "--upstream", "localhost:11435"])
    assert (result.exit_code, result.output) == (
        1,
        "Error: --upstream http://localhost:11435 is the proxy's own --listen 127.0.0.1:11435: requests would loop\n",
    )


def test_the_child_does_not_inherit_an_ignored_sigint() -> None:
    """Started with SIGINT ignored (``nohup``, ``cmd &`` in a script), the proxy still gets mitmdump a SIGINT it
    can act on: the handlers are in place before the child starts, and exec resets handled signals."""
    child = "import signal; print(signal.getsignal(signal.SIGINT) is signal.SIG_IGN)"
    parent = (
        "import sys; from analyzer.recorder.foreground import run_in_foreground; "
        f"sys.exit(run_in_foreground([sys.executable, '-c', {child!r}]))"
    )
    done = subprocess.run(
        [sys.executable, "-c", parent],
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert (done.returncode, done.stdout, done.stderr) == (0, "False\n", "")
