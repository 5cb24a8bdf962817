"""The one list of system packages (.ci/sysdeps.txt): complete, used by both `make test` and CI, and honest
without root (one line naming what is missing)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LIST = ROOT / ".ci" / "sysdeps.txt"
SCRIPT = ROOT / ".ci" / "sysdeps.sh"

# Tools the code looks for that no Debian package of the list provides, and why that is right.
NOT_SYSTEM_PACKAGES = {
    "mitmdump": "installed by pip with the project",
    "ollama-capture": "the project's own entry point",
    "head": "coreutils, always there",
    "setpriv": "util-linux, always there",
    "chromium-browser": "another distribution's name for chromium",
    "macmon": "macOS only",
    "osascript": "macOS only",
    "plutil": "macOS only",
    "powermetrics": "macOS only",
    "notify-send": "a desktop nicety of top, never needed by a test",
    "go": "Ollama v0.24.0 needs Go 1.26, which the machines provide (Debian's golang-go is 1.19)",
}


def listed() -> dict[str, str]:
    """probe -> Debian package, from the list."""
    probes = {}
    for line in LIST.read_text(encoding="utf-8").splitlines():
        fields = line.split("#", 1)[0].split()
        if fields:
            assert len(fields) >= 2, f"{LIST}: want 'PACKAGE PROBE...  # why', got {line!r}"
            probes.update(dict.fromkeys(fields[1:], fields[0]))
    return probes


def probed_tools() -> set[str]:
    """Every program the suite, the benchmarks and the code look for with shutil.which."""
    pattern = re.compile(r"""shutil\.which\(\s*["']([\w.-]+)["']""")
    return {
        name
        for folder in ("tests", "benchmarks", "analyzer", "capture_scripts")
        for path in (ROOT / folder).rglob("*.py")
        for name in pattern.findall(path.read_text(encoding="utf-8"))
    }


def test_every_tool_the_suite_looks_for_is_in_the_list() -> None:
    unlisted = sorted(probed_tools() - set(listed()) - set(NOT_SYSTEM_PACKAGES))
    assert not unlisted, f"add these to {LIST.relative_to(ROOT)} (or to NOT_SYSTEM_PACKAGES with a reason): {unlisted}"


def test_make_test_and_ci_install_the_same_list() -> None:
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    assert re.search(r"^test:.*\bsysdeps\b", makefile, re.M), "make test must depend on sysdeps"
    assert re.search(r"^sysdeps:\n\t.*bash \.ci/sysdeps\.sh", makefile, re.M)
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert "bash .ci/sysdeps.sh" in ci and "make test" in ci
    assert "apt-get install" not in ci, ".ci/run installs through .ci/sysdeps.sh only"


@pytest.fixture
def tmp_path(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A directory an unprivileged user can read (pytest's own are private to root)."""
    with tempfile.TemporaryDirectory(prefix="sysdeps-") as name:
        Path(name).chmod(0o755)
        yield Path(name)


def _copy_with_list(tmp_path: Path, lines: str) -> Path:
    (tmp_path / ".ci").mkdir()
    script = tmp_path / ".ci" / "sysdeps.sh"
    shutil.copy(SCRIPT, script)
    (tmp_path / ".ci" / "sysdeps.txt").write_text(lines, encoding="utf-8")
    return script


def _run_unprivileged(script: Path) -> subprocess.CompletedProcess[str]:
    command = ["bash", str(script)]
    if os.geteuid() == 0:
        if shutil.which("setpriv") is None:
            pytest.skip("needs setpriv to drop root")
        script.parent.chmod(0o755)
        command = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", *command]
    return subprocess.run(command, capture_output=True, text=True, timeout=30, check=False)


def test_without_root_one_line_names_what_is_missing(tmp_path: Path) -> None:
    script = _copy_with_list(
        tmp_path,
        "# comment\nbash bash  # here\nno-such-pkg-a  no-such-tool-a  # absent\n"
        "no-such-pkg-b  /bin/sh /no/such/file.h\ncoreutils /bin/sh\n",
    )
    done = _run_unprivileged(script)
    assert done.returncode == 0 and done.stdout == ""
    assert done.stderr.splitlines() == [
        "warning: missing system packages: no-such-pkg-a no-such-pkg-b "
        "(as root: make sysdeps; until then the tests that need them skip)"
    ]


def test_nothing_said_when_everything_is_there(tmp_path: Path) -> None:
    script = _copy_with_list(tmp_path, "bash bash\ncoreutils /bin/sh\n")
    done = _run_unprivileged(script)
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")
