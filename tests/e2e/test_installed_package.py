"""The addon from an installed package: a wheel built from this checkout, installed into a fresh venv elsewhere.

The fresh venv gets only the wheel (``pip install --no-deps --no-index``); its third-party dependencies
(mitmproxy, click, …) come from the test's own environment through a ``.pth`` line, so the test stays offline
and fast. ``analyzer`` itself must come from the wheel: the fresh interpreter runs outside the checkout,
the editable install's finder is not loaded, and the test checks where ``analyzer`` was imported from.
mitmdump is the one a ``pip install mitmproxy`` would create: a console script of the fresh interpreter,
put on PATH rather than beside it (as with pipx), so a PATH without it shows the "mitmdump missing" error.
"""

from __future__ import annotations

import importlib.metadata
import os
import pwd
import shutil
import signal
import subprocess
import sys
import sysconfig
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import ollama
import pytest

from analyzer.emulator import EmulatorThread, expected_text
from analyzer.protocol.record import InteractionRecord
from analyzer.recorder.process import LISTENING
from analyzer.store.log import read_log

ROOT = Path(__file__).resolve().parents[2]
CHECKOUT_SCRIPT = ROOT / "addons" / "ollama_log.py"
START_TIMEOUT_S = 30.0
RECORD_TIMEOUT_S = 15.0
STOP_TIMEOUT_S = 20.0


@dataclass
class FreshInstall:
    """A venv outside the checkout with the wheel installed; ``env`` has a PATH with mitmdump on it."""

    root: Path
    python: Path
    bin: Path
    purelib: Path
    mitmdump_dir: Path

    def env(self, *, with_mitmdump: bool = True) -> dict[str, str]:
        path = [str(self.bin), "/usr/bin", "/bin"]
        if with_mitmdump:
            path.insert(0, str(self.mitmdump_dir))
        keep = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
        return {**keep, "PATH": os.pathsep.join(path), "PYTHONUNBUFFERED": "1"}

    def run(self, *argv: str, with_mitmdump: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self.bin / argv[0]), *argv[1:]],
            cwd=self.root,
            env=self.env(with_mitmdump=with_mitmdump),
            capture_output=True,
            text=True,
            timeout=60,
        )


def _build_wheel(workdir: Path) -> Path:
    """``pip wheel`` of a copy of the checkout (the build leaves ``build/`` and egg-info behind)."""
    source = workdir / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, source / name)
    for package in ("analyzer", "capture_scripts"):
        shutil.copytree(ROOT / package, source / package, ignore=shutil.ignore_patterns("__pycache__"))
    dist = workdir / "dist"
    offline = ["--no-deps", "--no-build-isolation", "--no-index"]
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", *offline, "-w", str(dist), str(source)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (wheel,) = dist.glob("ollama_wire-*.whl")
    return wheel


def _console_script(path: Path, python: Path, entry: str) -> None:
    module, function = entry.split(":")
    path.write_text(f"#!{python}\nimport sys\nfrom {module} import {function}\nsys.exit({function}())\n")
    path.chmod(0o755)


@pytest.fixture(scope="module")
def fresh(tmp_path_factory: pytest.TempPathFactory) -> FreshInstall:
    workdir = tmp_path_factory.mktemp("installed")
    wheel = _build_wheel(workdir)
    venv = workdir / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    purelib = Path(
        subprocess.run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
    )
    ours = dict.fromkeys([sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]])  # lib64 on some
    (purelib / "_dependencies_from_the_test_env.pth").write_text("".join(f"{path}\n" for path in ours))
    subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "--no-deps", "--no-index", "--ignore-installed", str(wheel)],
        check=True,
        capture_output=True,
        cwd=workdir,
        timeout=300,
    )
    mitmdump_dir = workdir / "mitmdump-bin"
    mitmdump_dir.mkdir()
    (entry,) = [ep for ep in importlib.metadata.distribution("mitmproxy").entry_points if ep.name == "mitmdump"]
    _console_script(mitmdump_dir / "mitmdump", python, entry.value)
    return FreshInstall(workdir, python, venv / "bin", purelib, mitmdump_dir)


def _start(argv: list[str], fresh: FreshInstall, console: Path) -> tuple[subprocess.Popen[bytes], str]:
    """Start a proxy (listening on port 0) and wait, bounded, for its "listening at" line; (process, url)."""
    with console.open("wb") as out:
        process = subprocess.Popen(argv, cwd=fresh.root, env=fresh.env(), stdout=out, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline and process.poll() is None:
        match = LISTENING.search(console.read_text(errors="replace"))
        if match:
            return process, f"http://127.0.0.1:{match.group(2)}"
        time.sleep(0.05)
    _stop(process)
    raise AssertionError(f"proxy did not start: {console.read_text(errors='replace')[-2000:]}")


def _stop(process: subprocess.Popen[bytes]) -> int:
    """SIGINT (what Ctrl-C sends) and a bounded wait; kill only if it hangs (then the test fails on the status)."""
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(STOP_TIMEOUT_S)
            return -999
    return process.returncode


def _generate_and_wait(url: str, emulator: EmulatorThread, log_dir: Path) -> tuple[InteractionRecord, str]:
    marker = f"installed-{uuid.uuid4().hex[:8]}"
    model = emulator.config.models[0]
    with ollama.Client(host=url) as client:  # closed: mitmproxy 11 prints a traceback for connections open at exit
        reply = "".join(part.response for part in client.generate(model=model, prompt=marker, stream=True))
    deadline = time.monotonic() + RECORD_TIMEOUT_S
    while time.monotonic() < deadline:
        found = [r for r in (read_log(log_dir) if log_dir.exists() else []) if r.prompt == marker]
        if found:
            return found[0], reply
        time.sleep(0.05)
    raise AssertionError(f"no record with prompt {marker!r} in {log_dir} after {RECORD_TIMEOUT_S}s")


def _assert_recorded(record: InteractionRecord, reply: str, emulator: EmulatorThread) -> None:
    body = {"model": emulator.config.models[0], "prompt": record.prompt, "stream": True}
    expected = expected_text("generate", body, emulator.config)
    assert reply == expected
    assert (record.source, record.method, record.path, record.status) == ("proxy", "POST", "/api/generate", 200)
    assert (record.model, record.stream, record.complete, record.flags) == (emulator.config.models[0], True, True, [])
    assert record.response_text == expected and record.chunks > 1


def test_analyzer_and_addon_path_come_from_the_wheel(fresh: FreshInstall) -> None:
    imported = fresh.run("python", "-c", "import analyzer; print(analyzer.__file__)")
    assert imported.stdout.strip() == str(fresh.purelib / "analyzer" / "__init__.py")
    result = fresh.run("ollama-wire", "addon-path")
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"{fresh.purelib / 'analyzer' / 'recorder' / 'mitmproxy_script.py'}\n"
    assert Path(result.stdout.strip()).is_file()


def test_proxy_without_mitmdump_says_so_in_one_line(fresh: FreshInstall) -> None:
    result = fresh.run("ollama-wire", "proxy", "--listen", "127.0.0.1:0", with_mitmdump=False)
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.startswith("Error: mitmdump not found") and result.stderr.count("\n") == 1


def test_proxy_from_the_wheel_records_an_interaction(
    fresh: FreshInstall, emulator: EmulatorThread, tmp_path: Path
) -> None:
    log_dir = tmp_path / "log"
    argv = [str(fresh.bin / "ollama-wire"), "proxy", "--listen", "127.0.0.1:0", "--upstream", emulator.url]
    process, url = _start([*argv, "--set", f"ollama_log_dir={log_dir}"], fresh, tmp_path / "console.txt")
    try:
        record, reply = _generate_and_wait(url, emulator, log_dir)
    finally:
        status = _stop(process)
    console = (tmp_path / "console.txt").read_text(errors="replace")
    _assert_recorded(record, reply, emulator)
    assert status == 0, console
    assert f"Loading script {fresh.purelib / 'analyzer' / 'recorder' / 'mitmproxy_script.py'}" in console
    assert "Traceback" not in console


@pytest.mark.parametrize("environment", ["checkout", "wheel"])
def test_checkout_script_loads_with_mitmdump_s(
    environment: str, fresh: FreshInstall, emulator: EmulatorThread, tmp_path: Path
) -> None:
    """``mitmdump -s addons/ollama_log.py`` works from the checkout's venv and against the installed wheel."""
    log_dir = tmp_path / "log"
    mitmdump = fresh.mitmdump_dir / "mitmdump" if environment == "wheel" else Path(sys.executable).parent / "mitmdump"
    argv = [str(mitmdump), "--mode", f"reverse:{emulator.url}@127.0.0.1:0", "-s", str(CHECKOUT_SCRIPT)]
    process, url = _start([*argv, "--set", f"ollama_log_dir={log_dir}"], fresh, tmp_path / "console.txt")
    try:
        record, reply = _generate_and_wait(url, emulator, log_dir)
    finally:
        status = _stop(process)
    _assert_recorded(record, reply, emulator)
    assert status == 0
    # where the addon's code came from: the wheel in the fresh venv, the checkout in the checkout's venv
    origin = fresh.purelib if environment == "wheel" else ROOT
    assert f"Loading script {CHECKOUT_SCRIPT}" in (tmp_path / "console.txt").read_text(errors="replace")
    assert _addon_origin(mitmdump, fresh) == origin / "analyzer" / "recorder" / "addon.py"


def _addon_origin(mitmdump: Path, fresh: FreshInstall) -> Path:
    """The file ``analyzer.recorder.addon`` resolves to for the interpreter that runs ``mitmdump``."""
    python = mitmdump.read_text().splitlines()[0].removeprefix("#!").strip()
    code = "import analyzer.recorder.addon as a; print(a.__file__)"
    found = subprocess.run([python, "-c", code], cwd=fresh.root, capture_output=True, text=True, check=True)
    return Path(found.stdout.strip())


def test_capture_setup_renders_the_packaged_sudoers_template(fresh: FreshInstall) -> None:
    """The sudoers rule's one source is package data: an installed ``ollama-capture`` renders it."""
    user = pwd.getpwnam("nobody").pw_name  # any account but root (root needs no rule)
    result = fresh.run("ollama-capture", "setup", "--user", user, "--print")
    assert result.returncode == 0, result.stderr
    rule = result.stdout.split(f"/etc/sudoers.d/ollama-capture-{user}  mode 0440  owner 0:0 =====\n", 1)[1]
    assert rule.startswith(f"# ollama-capture: lets {user} take packet snapshots")
    assert "@USER@" not in rule and "@HELPER@" not in rule
