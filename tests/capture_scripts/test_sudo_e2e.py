"""Real setup, real sudo, real tcpdump, as a real unprivileged user — and escalation attempts through the rule.

Runs only as root (CI does): creates a user, installs the helper and the sudoers drop-in for it, takes
snapshots as that user while the emulator serves real `ollama` client traffic, then tries to get more than
"a capture of the configured port into the spool" out of the rule and the helper.
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import secrets
import shutil
import signal
import stat
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from capture_support import Installation, needs_root, run_as, start_as
from capture_support import TestUser as CaptureUser
from click.testing import CliRunner

from capture_scripts import install
from capture_scripts.cli import cli
from capture_scripts.snapshot import count_packets

pytestmark = [pytest.mark.root, pytest.mark.live, needs_root]


def invoke_cli(args: list[str]) -> dict[str, Any]:
    """Run the CLI in-process (already as the test user) and return exit code and output."""
    result = CliRunner().invoke(cli, args)
    return {"exit_code": result.exit_code, "output": result.output}


def as_user_shell(inst: Installation, *argv: str) -> subprocess.CompletedProcess[str]:
    """Run a command as the test user (runuser drops root; the command gets no terminal)."""
    return subprocess.run(
        ["runuser", "-u", inst.user.name, "--", *argv],
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
        cwd="/",
        check=False,
    )


def spool_listing(inst: Installation) -> set[str]:
    """Every path under the spool (to prove refused attempts leave nothing behind)."""
    return {str(p.relative_to(inst.spool)) for p in inst.spool.rglob("*") if not p.name.startswith("slot-")}


def test_setup_installed_root_owned_helper_and_valid_rule(installation: Installation) -> None:
    helper_st = installation.helper.stat()
    assert helper_st.st_uid == 0 and stat.S_IMODE(helper_st.st_mode) == 0o755
    assert installation.helper.read_text().startswith("#!/usr/bin/python3 -I\n")
    assert f"SPOOL_DIR = '{installation.spool}'" in installation.helper.read_text()
    rule_st = installation.sudoers.stat()
    assert rule_st.st_uid == 0 and stat.S_IMODE(rule_st.st_mode) == 0o440
    assert "." not in installation.sudoers.name and not installation.sudoers.name.endswith("~")
    assert subprocess.run(["visudo", "-c", "-q"], check=False).returncode == 0
    listing = subprocess.run(["sudo", "-l", "-U", installation.user.name], capture_output=True, text=True).stdout
    assert f"{installation.helper} check" in listing
    assert "tcpdump" not in listing.replace(str(installation.helper), "") and "timeout" not in listing
    spool_st = installation.spool.stat()
    assert spool_st.st_uid == 0 and not spool_st.st_mode & (stat.S_IWGRP | stat.S_IWOTH)
    assert stat.S_IMODE((installation.spool / ".partial").stat().st_mode) == 0o700


def test_once_as_user_through_sudo_captures_real_client_traffic(
    installation: Installation, traffic: Any, emulator: Any
) -> None:
    args = ["once", "--config", str(installation.config_path), "--duration", "4", "--port", str(emulator.port)]
    args.append("--json")
    with traffic() as sent:
        result = run_as(installation.user, invoke_cli, args)
    assert result["exit_code"] == 0, result["output"]
    assert sent.sent > 0 and not sent.errors
    snap = __import__("json").loads(result["output"])
    path = Path(snap["path"])
    assert snap["method"] == "sudo"
    assert path.parent == installation.user.home / "captures"
    assert path.name.startswith("ollama-") and path.name.endswith("Z.pcap")
    st = path.stat()
    assert (st.st_uid, st.st_gid) == (installation.user.uid, installation.user.gid)
    assert stat.S_IMODE(st.st_mode) == 0o600
    assert snap["packets"] == count_packets(path) > 0
    tshark = subprocess.run(["tshark", "-r", str(path), "-Y", "http.request"], capture_output=True, text=True)
    assert tshark.returncode == 0 and "POST /api/generate" in tshark.stdout
    # Delivered out of the spool; no partial file left behind.
    assert list(installation.outbox.iterdir()) == []
    assert [p for p in (installation.spool / ".partial").iterdir() if p.name.endswith(".partial")] == []

    from analyzer.pcap.captures import iter_packets

    assert sum(1 for _ in iter_packets(str(path))) == snap["packets"]
    from analyzer.pcap import batch

    appended = batch.analyze_into_log([path], installation.user.home / "logs", [emulator.port])
    assert appended > 0


def test_snapshot_ends_on_time_without_packets(installation: Installation) -> None:
    done = as_user_shell(
        installation, "sudo", "-n", str(installation.helper), "capture", "--interface", "lo",
        "--duration", "2", "--port", "9",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    summary = __import__("json").loads(done.stdout.splitlines()[-1])
    path = Path(summary["path"])
    assert path.parent == installation.outbox
    assert count_packets(path) == 0 and summary["bytes"] == 24
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and path.stat().st_uid == installation.user.uid
    path.unlink()


def test_missing_rule_is_a_clear_error_not_a_prompt(installation: Installation, tmp_path: Path) -> None:
    config = installation.user.home / "norule.yaml"
    config.write_text(
        f"helper: /usr/local/libexec/not-allowed/helper\nmethod: sudo\nstate_dir: {installation.user.home}/s2\n"
    )
    os.chown(config, installation.user.uid, installation.user.gid)
    result = run_as(installation.user, invoke_cli, ["once", "--config", str(config), "--duration", "1"])
    assert result["exit_code"] == 3
    assert "sudo ollama-capture setup --user" in result["output"]


MARK = "/tmp/ollama-capture-pwned"

SUDO_ESCALATIONS = [
    ["tcpdump", "-i", "lo", "-w", "/tmp/x.pcap", "-z", "/usr/bin/touch", "-Z", "root"],
    ["/usr/bin/tcpdump", "-c", "1", "-i", "lo", "-w", MARK],
    ["timeout", "1d", "/bin/sh", "-c", f"touch {MARK}"],
    ["/usr/bin/timeout", "5", "/usr/bin/touch", MARK],
    ["/bin/sh", "-c", f"touch {MARK}"],
    ["-E", "@HELPER@", "check"],
    ["PYTHONINSPECT=1", "@HELPER@", "check"],
    ["PYTHONPATH=/tmp", "@HELPER@", "check"],
    ["-u", "nobody", "@HELPER@", "check"],
    ["@HELPER@"],
    ["@HELPER@", "check", "--verbose"],
    ["@HELPER@.py", "check"],
    ["/usr/bin/python3", "@HELPER@", "check"],
]

HELPER_INJECTIONS = [
    ["-z", "/usr/bin/touch"],
    ["-Z", "root"],
    ["-w", "/etc/ollama-capture-pwned"],
    ["--name", "../../../etc/ollama-capture-pwned.pcap"],
    ["--name", "../x.pcap"],
    ["--name", "/etc/passwd"],
    ["--name", ".hidden.pcap"],
    ["--name", "-w.pcap"],
    ["--name", f"x.pcap;touch {MARK}"],
    ["--name", "x.pcap\n"],
    ["--interface", f"lo;touch {MARK}"],
    ["--interface", f"$(touch {MARK})"],
    ["--interface", "../../etc"],
    ["--interface", "-w"],
    ["--interface", "lo --interface"],
    ["--interface=lo"],
    ["--duration", "999999"],
    ["--duration", "601"],
    ["--duration", "0"],
    ["--duration", "-1"],
    ["--duration", "1e9"],
    ["--duration", "5 -z touch"],
    ["--port", "0"],
    ["--port", "70000"],
    ["--port", "11434 or host 10.0.0.1"],
    ["--port", "11434)"],
    ["--port", "+11434"],
    ["--port", "22"],  # a real port, but not one setup allowed: no sniffing other services
    ["--port", "5432"],
    ["--port", " 11434"],
    *[[a for n in range(17) for a in ("--port", str(1000 + n))]],
    ["--tcpdump-arg", "-z"],
    ["--", "-z"],
]


@pytest.mark.parametrize("attempt", SUDO_ESCALATIONS, ids=lambda a: " ".join(a)[:40])
def test_rule_allows_nothing_but_the_helper(installation: Installation, attempt: list[str]) -> None:
    before = spool_listing(installation)
    argv = [str(installation.helper) + a[len("@HELPER@") :] if a.startswith("@HELPER@") else a for a in attempt]
    if attempt[0].startswith("PYTHON"):
        argv = [attempt[0], *argv[1:]]
    done = as_user_shell(installation, "sudo", "-n", *argv)
    assert done.returncode != 0, done.stdout
    assert done.stderr.startswith("sudo:"), done.stderr  # refused by sudo itself, before anything ran
    assert not Path(MARK).exists() and not Path("/tmp/x.pcap").exists()
    assert spool_listing(installation) == before


@pytest.mark.parametrize("extra", HELPER_INJECTIONS, ids=lambda a: " ".join(a)[:40])
def test_helper_refuses_injected_arguments(installation: Installation, extra: list[str]) -> None:
    before = spool_listing(installation)
    base = {"--interface": "lo", "--duration": "1", "--port": "11434"}
    for flag in extra:
        base.pop(flag, None)
    argv = [str(installation.helper), "capture", *[x for kv in base.items() for x in kv], *extra]
    done = as_user_shell(installation, "sudo", "-n", *argv)
    assert done.returncode == 2, (done.returncode, done.stdout, done.stderr)
    assert "refused" in done.stderr
    assert not Path(MARK).exists()
    assert not Path("/etc/ollama-capture-pwned").exists() and not Path("/etc/ollama-capture-pwned.pcap").exists()
    assert spool_listing(installation) == before


def test_rule_allows_the_powermetrics_subcommand_and_the_helper_checks_it(installation: Installation) -> None:
    """sudo lets the user run ``helper powermetrics``; the helper, not sudo, refuses anything but its two flags."""
    helper_path = str(installation.helper)
    allowed = as_user_shell(
        installation, "sudo", "-n", helper_path, "powermetrics", "--interval", "200", "--duration", "1"
    )
    if os.path.exists("/usr/bin/powermetrics"):
        assert allowed.returncode == 0, allowed.stderr
    else:  # not a Mac: the helper ran as root and says why it cannot sample
        assert allowed.returncode == 3 and "no root-owned powermetrics" in allowed.stderr, allowed.stderr
    injected = as_user_shell(
        installation, "sudo", "-n", helper_path, "powermetrics", "--interval", "200", "--duration", "1",
        "--samplers", "tasks",
    )  # fmt: skip
    assert injected.returncode == 2 and "refused" in injected.stderr, injected.stderr


def test_planted_symlink_in_outbox_is_not_followed(installation: Installation) -> None:
    target = Path(f"/etc/ollama-capture-symlink-{os.getpid()}")
    link = installation.outbox / "planted.pcap"
    made = as_user_shell(installation, "ln", "-s", str(target), str(link))
    assert made.returncode == 0, made.stderr
    try:
        done = as_user_shell(
            installation, "sudo", "-n", str(installation.helper), "capture", "--interface", "lo",
            "--duration", "1", "--port", "9", "--name", "planted.pcap",
        )  # fmt: skip
        assert done.returncode == 3 and "already exists" in done.stderr
        assert not target.exists()
        assert link.is_symlink()
        # The user cannot put anything into the root-only parts of the spool either.
        for where in (installation.spool / "evil", installation.spool / ".partial" / "evil"):
            assert as_user_shell(installation, "ln", "-s", "/etc/shadow", str(where)).returncode != 0
    finally:
        link.unlink(missing_ok=True)
        target.unlink(missing_ok=True)


def _wait_for_partial(inst: Installation, bound: float = 30.0) -> None:
    deadline = time.monotonic() + bound
    while time.monotonic() < deadline:
        if any(p.name.endswith(".partial") for p in (inst.spool / ".partial").iterdir()):
            return
        time.sleep(0.05)
    raise AssertionError("the helper never started a capture")


def test_runner_lock_and_sigterm_finish_the_snapshot(installation: Installation) -> None:
    config = installation.user.home / "run.yaml"
    home = installation.user.home
    config.write_text(
        f"helper: {installation.helper}\nspool_dir: {installation.spool}\noutput_dir: {home}/runcaps\n"
        f"state_dir: {home}/runstate\nmethod: sudo\nduration: 300\ninterval: 600\nports: [9]\n"
    )
    os.chown(config, installation.user.uid, installation.user.gid)
    runner = start_as(installation.user, invoke_cli, ["run", "--config", str(config), "--quiet"])
    try:
        _wait_for_partial(installation)
        second = run_as(installation.user, invoke_cli, ["run", "--config", str(config), "--max-snapshots", "1"])
        assert second["exit_code"] == 5 and "holds" in second["output"]
    finally:
        runner.signal(signal.SIGTERM)
    result = runner.result()
    assert result["exit_code"] == 0, result["output"]
    status = run_as(installation.user, invoke_cli, ["status", "--config", str(config), "--json"])
    state = __import__("json").loads(status["output"])
    assert state["snapshots"] == 1 and state["runner_pid"] is None
    assert state["last_snapshot"]["stopped_early"] is True
    finished = Path(state["last_snapshot"]["path"])
    assert finished.exists() and finished.stat().st_uid == installation.user.uid
    assert [p for p in (installation.spool / ".partial").iterdir() if p.name.endswith(".partial")] == []
    assert list(installation.outbox.iterdir()) == []
    log = (installation.user.home / "runstate" / "capture.log").read_text()
    assert "runner stopped (SIGTERM) after 1 snapshot(s)" in log


@pytest.fixture
def quota_installation() -> Iterator[Installation]:
    """A second fresh user, set up through the CLI with room for one snapshot in the outbox; undone afterwards."""
    name = f"ocapq{secrets.token_hex(3)}"
    home = Path("/tmp") / f"{name}-home"
    tag = secrets.token_hex(3)
    helper = Path(f"/usr/local/libexec/ollama-wire-test-{tag}/ollama-capture-helper")
    spool = Path(f"/var/spool/ollama-wire-test-{tag}")
    sudoers = install.SUDOERS_DIR / install.sudoers_file_name(name)
    subprocess.run(["useradd", "--no-create-home", "--home-dir", str(home), "--shell", "/bin/sh", name], check=True)
    try:
        pw = pwd.getpwnam(name)
        home.mkdir(mode=0o755)
        os.chown(home, pw.pw_uid, pw.pw_gid)
        setup = CliRunner().invoke(
            cli, ["setup", "--user", name, "--helper", str(helper), "--spool", str(spool), "--port", "9",
                  "--max-outbox-files", "1"],
        )  # fmt: skip
        assert setup.exit_code == 0, setup.output
        assert "MAX_OUTBOX_FILES = 1\n" in helper.read_text()
        config = home / "capture.yaml"
        config.write_text(
            f"helper: {helper}\nspool_dir: {spool}\noutput_dir: {home}/captures\nstate_dir: {home}/state\n"
            "method: sudo\nports: [9]\ninterface: lo\n",
            encoding="utf-8",
        )
        os.chown(config, pw.pw_uid, pw.pw_gid)
        yield Installation(CaptureUser(name, pw.pw_uid, pw.pw_gid, home), helper, spool, sudoers, config)
    finally:
        sudoers.unlink(missing_ok=True)
        shutil.rmtree(helper.parent, ignore_errors=True)
        shutil.rmtree(spool, ignore_errors=True)
        with contextlib.suppress(subprocess.CalledProcessError):
            subprocess.run(["pkill", "-KILL", "-U", name], check=False)
            subprocess.run(["userdel", name], check=False)
        shutil.rmtree(home, ignore_errors=True)


def test_full_outbox_refuses_the_next_snapshot(quota_installation: Installation) -> None:
    inst = quota_installation
    capture = ["sudo", "-n", str(inst.helper), "capture", "--interface", "lo", "--duration", "1", "--port", "9"]
    # A snapshot the runner does not collect (it moves only ollama-*.pcap out of the outbox) stays there.
    first = as_user_shell(inst, *capture, "--name", "manual-1.pcap")
    assert first.returncode == 0, first.stderr
    undelivered = Path(json.loads(first.stdout.splitlines()[-1])["path"])
    assert undelivered == inst.outbox / "manual-1.pcap"
    before = spool_listing(inst)

    second = as_user_shell(inst, *capture)
    assert second.returncode == 3, (second.stdout, second.stderr)
    assert f"outbox {inst.outbox} is full: it holds 1 file(s)" in second.stderr
    assert "nothing was captured" in second.stderr
    once = ["once", "--config", str(inst.config_path), "--duration", "1"]
    refused = run_as(inst.user, invoke_cli, once)
    assert refused["exit_code"] == 4 and f"outbox {inst.outbox} is full" in refused["output"], refused["output"]
    assert spool_listing(inst) == before  # nothing new in the spool (not even a partial file)
    assert list((inst.user.home / "captures").glob("*.pcap")) == []

    # Once the outbox is emptied, snapshots work again — and `once` moves its snapshot straight out of it.
    undelivered.unlink()
    done = run_as(inst.user, invoke_cli, once)
    assert done["exit_code"] == 0, done["output"]
    assert len(list((inst.user.home / "captures").glob("*.pcap"))) == 1
    assert list(inst.outbox.iterdir()) == []


def test_setup_refuses_a_port_in_the_ephemeral_range(test_user: CaptureUser, tmp_path: Path) -> None:
    if install.ephemeral_ports((40000,)) != [40000]:
        pytest.skip("port 40000 is not in this machine's ephemeral port range")
    helper = tmp_path / "libexec" / "ollama-capture-helper"
    spool = tmp_path / "spool"
    sudoers_dir = tmp_path / "sudoers.d"
    sudoers_dir.mkdir(mode=0o755)
    args = ["setup", "--user", test_user.name, "--helper", str(helper), "--spool", str(spool),
            "--sudoers-dir", str(sudoers_dir), "--port", "40000"]  # fmt: skip
    try:
        refused = CliRunner().invoke(cli, args)
        assert refused.exit_code == 1, refused.output
        assert "refusing: port 40000 is in this machine's ephemeral port range" in refused.output
        assert "--allow-ephemeral-port" in refused.output
        assert not helper.exists() and not spool.exists() and list(sudoers_dir.iterdir()) == []

        allowed = CliRunner().invoke(cli, [*args, "--allow-ephemeral-port"])
        assert allowed.exit_code == 0, allowed.output
        assert "warning: port 40000 is in this machine's ephemeral port range" in allowed.output
        assert "ALLOWED_PORTS = (40000,)" in helper.read_text()
    finally:
        shutil.rmtree(sudoers_dir, ignore_errors=True)
        shutil.rmtree(helper.parent, ignore_errors=True)
        shutil.rmtree(spool, ignore_errors=True)


def test_setup_then_uninstall_through_the_cli_leaves_nothing(test_user: CaptureUser, tmp_path: Path) -> None:
    helper = tmp_path / "libexec" / "ollama-capture-helper"
    spool = tmp_path / "spool"
    sudoers_dir = tmp_path / "sudoers.d"
    sudoers_dir.mkdir(mode=0o755)
    where = [
        "--user",
        test_user.name,
        "--helper",
        str(helper),
        "--spool",
        str(spool),
        "--sudoers-dir",
        str(sudoers_dir),
    ]
    try:
        installed = CliRunner().invoke(cli, ["setup", *where])
        assert installed.exit_code == 0, installed.output
        (drop_in,) = sudoers_dir.iterdir()
        assert stat.S_IMODE(drop_in.stat().st_mode) == 0o440 and "." not in drop_in.name
        assert helper.exists() and (spool / test_user.name).is_dir()

        removed = CliRunner().invoke(cli, ["setup", *where, "--uninstall", "--remove-spool"])
        assert removed.exit_code == 0, removed.output
        assert list(sudoers_dir.iterdir()) == [] and not helper.exists() and not spool.exists()
    finally:
        shutil.rmtree(sudoers_dir, ignore_errors=True)
        shutil.rmtree(helper.parent, ignore_errors=True)
        shutil.rmtree(spool, ignore_errors=True)
