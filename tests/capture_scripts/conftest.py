"""Fixtures for the capture runner: a throw-away unprivileged user, a real setup, code run as that user.

Everything root-only cleans up in finalizers (userdel, sudoers drop-in, helper, spool) even when a test fails.
The helper and spool go under test-specific paths; the sudoers drop-in goes into the real /etc/sudoers.d,
because whether sudo itself honours the rule is what the tests check.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import secrets
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from capture_support import IS_ROOT, Installation, TestUser, Traffic

from capture_scripts import install


@pytest.fixture(scope="module")
def test_user(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestUser]:
    """A fresh unprivileged user with its own home under /tmp (removed afterwards)."""
    if not IS_ROOT:
        pytest.skip("needs root")
    name = f"ocap{secrets.token_hex(3)}"
    home = Path("/tmp") / f"{name}-home"
    subprocess.run(["useradd", "--no-create-home", "--home-dir", str(home), "--shell", "/bin/sh", name], check=True)
    try:
        pw = pwd.getpwnam(name)
        home.mkdir(mode=0o755)
        os.chown(home, pw.pw_uid, pw.pw_gid)
        yield TestUser(name, pw.pw_uid, pw.pw_gid, home)
    finally:
        with contextlib.suppress(subprocess.CalledProcessError):
            # Kill anything the user still runs (by uid, not by name), then remove the account.
            subprocess.run(["pkill", "-KILL", "-U", name], check=False)
            subprocess.run(["userdel", name], check=False)
        shutil.rmtree(home, ignore_errors=True)


@pytest.fixture(scope="module")
def installation(test_user: TestUser, emulator: Any) -> Iterator[Installation]:
    """Run the real setup (helper under /usr/local/libexec, real /etc/sudoers.d); undo it afterwards.

    The helper allows Ollama's port, the test emulator's port and port 9 (an idle port); no other.
    """
    tag = secrets.token_hex(3)
    helper = Path(f"/usr/local/libexec/ollama-wire-test-{tag}/ollama-capture-helper")
    spool = Path(f"/var/spool/ollama-wire-test-{tag}")
    plan = install.plan_setup(
        test_user.name, helper, spool, install.SUDOERS_DIR, max_duration=600, ports=(11434, 9, emulator.port)
    )
    try:
        install.apply_setup(plan)
        config_path = test_user.home / "capture.yaml"
        config_path.write_text(
            f"helper: {helper}\nspool_dir: {spool}\noutput_dir: {test_user.home}/captures\n"
            f"state_dir: {test_user.home}/state\nmethod: sudo\n",
            encoding="utf-8",
        )
        os.chown(config_path, test_user.uid, test_user.gid)
        yield Installation(test_user, helper, spool, plan.sudoers.path, config_path)
    finally:
        plan.sudoers.path.unlink(missing_ok=True)
        shutil.rmtree(helper.parent, ignore_errors=True)
        shutil.rmtree(spool, ignore_errors=True)


@pytest.fixture
def traffic(emulator: Any) -> Callable[[], Traffic]:
    """``with traffic() as t:`` sends generate requests to the emulator every 0.2 s."""
    return lambda: Traffic(emulator.url)
