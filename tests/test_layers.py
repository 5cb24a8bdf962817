"""The import rules of docs/architecture.md stay true over the whole tree.

* Inside ``analyzer/`` every import points downward: each layer (a folder) names the layers it may import.
* ``addons/`` imports only ``analyzer.recorder``; ``capture_scripts/`` only analyzer's lower layers (protocol,
  store, pcap, resources); the root helper (``capture_scripts/helper.py``) only the standard library.
* Third-party frameworks stay in their one home: mitmproxy in ``analyzer/recorder``, click in ``analyzer/cli``
  and ``capture_scripts/cli.py``, Textual in ``analyzer/live/top``.

Every import counts, wherever it sits: module level, inside a function, ``importlib.import_module("…")``.
A violation fails with ``file:line: WHO imports MODULE``; each rule has a test that plants one.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "analyzer"

# layer -> the layers it may import (besides itself). Missing folders are future layers.
ALLOWED: dict[str, frozenset[str]] = {
    "protocol": frozenset(),
    "emulator": frozenset(),
    "store": frozenset({"protocol"}),
    "pcap": frozenset({"protocol", "store"}),
    "resources": frozenset({"protocol", "store"}),
    "sources": frozenset({"protocol", "store", "pcap"}),
    "report": frozenset({"protocol", "store", "pcap", "sources", "resources"}),
    "live": frozenset({"protocol", "store", "resources"}),
    "export": frozenset({"protocol", "store", "sources", "resources"}),
    "companion": frozenset({"protocol", "store", "live", "export", "resources"}),
    "recorder": frozenset({"protocol", "store", "live", "companion"}),
    "replay": frozenset({"protocol", "store", "pcap", "sources", "resources", "report"}),
    "cli": frozenset(
        {
            "protocol",
            "store",
            "pcap",
            "resources",
            "sources",
            "report",
            "live",
            "export",
            "recorder",
            "emulator",
            "companion",
            "replay",
        }
    ),
}

# The packages beside analyzer/ -> the analyzer layers each may import (never each other).
OUTSIDE: dict[str, frozenset[str]] = {
    "addons": frozenset({"recorder"}),
    "capture_scripts": frozenset({"protocol", "store", "pcap", "resources"}),
}

# The root helper runs as root from a sudo rule: the standard library only, nothing of ours.
HELPER = "capture_scripts/helper.py"

# third-party package -> the only places (a folder ending in /, or one file) that may import it
FRAMEWORK_HOMES: dict[str, tuple[str, ...]] = {
    "mitmproxy": ("analyzer/recorder/",),
    "click": ("analyzer/cli/", "capture_scripts/cli.py"),
    "textual": ("analyzer/live/top/",),
}

# Top-level folders holding Python that are not shipped code (checked by their own tests or not at all).
NOT_SHIPPED = {"tests", "benchmarks", "docs", ".ci", ".venv", ".venv-mitmproxy12", "logs"}


def imported_modules(path: Path, root: Path = ROOT) -> list[tuple[int, str]]:
    """(line, absolute module) for every import in ``path``: plain, relative (resolved), inside functions, and
    ``importlib.import_module("…")`` with a literal name. ``from pkg import name`` also yields ``pkg.name``."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = path.relative_to(root).with_suffix("").parts[:-1]
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        modules: list[str] = []
        if isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = list(package[: len(package) - node.level + 1])
                module = ".".join([*base, node.module] if node.module else base)
            else:
                module = node.module or ""
            # ``from analyzer import recorder`` names a layer; ``from analyzer import load_log`` the public API
            modules = [f"{module}.{alias.name}" for alias in node.names] if "." not in module else [module]
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "import_module" and node.args:
            argument = node.args[0]
            if isinstance(argument, ast.Constant) and isinstance(argument.value, str):
                modules = [argument.value]
        found.extend((node.lineno, module) for module in modules if module)
    return sorted(found)


def imported_layers(path: Path) -> list[tuple[int, str, str]]:
    """(line, layer, module) for every ``analyzer.<layer>`` import in ``path`` (relative imports resolved)."""
    found = []
    for line, module in imported_modules(path, PACKAGE.parent):
        parts = module.split(".")
        if parts[0] == "analyzer" and len(parts) > 1:
            found.append((line, parts[1], module))
    return found


def layer_files() -> list[tuple[str, Path]]:
    return [
        (folder.name, path)
        for folder in sorted(PACKAGE.iterdir())
        if folder.is_dir() and (folder / "__init__.py").exists()
        for path in sorted(folder.rglob("*.py"))
    ]


def shipped_files(root: Path = ROOT) -> Iterator[Path]:
    """Every Python file of the shipped tree: analyzer/ and the packages beside it."""
    for folder in sorted(("analyzer", *OUTSIDE)):
        yield from sorted((root / folder).rglob("*.py"))


def test_every_layer_is_known_and_documented() -> None:
    for folder in PACKAGE.iterdir():
        if folder.is_dir() and (folder / "__init__.py").exists():
            assert folder.name in ALLOWED, f"analyzer/{folder.name}/ is not in the layer map of {__file__}"
            docstring = ast.get_docstring(ast.parse((folder / "__init__.py").read_text(encoding="utf-8")))
            assert docstring and len(docstring) > 80, f"analyzer/{folder.name}/__init__.py needs a docstring"


def test_no_flat_modules_beside_the_layers() -> None:
    assert sorted(p.name for p in PACKAGE.glob("*.py")) == ["__init__.py"]


def test_every_python_folder_has_a_rule() -> None:
    """A new top-level package cannot slip past these rules: it needs a line in OUTSIDE (or NOT_SHIPPED)."""
    unruled = [
        folder.name
        for folder in ROOT.iterdir()
        if folder.is_dir()
        and folder.name not in {"analyzer", *OUTSIDE, *NOT_SHIPPED}
        and not folder.name.startswith(".")
        and any(folder.rglob("*.py"))
    ]
    assert not unruled, f"folders with Python but no import rule in {__file__}: {unruled}"


@pytest.mark.parametrize(("layer", "path"), layer_files(), ids=lambda v: str(v).rsplit("analyzer/", 1)[-1])
def test_imports_point_downward(layer: str, path: Path) -> None:
    wrong = [
        f"{path.relative_to(PACKAGE.parent)}:{line}: {layer} imports {module}"
        for line, target, module in imported_layers(path)
        if target != layer and target not in ALLOWED[layer]
    ]
    assert not wrong, "\n".join(wrong)


def outside_violations(path: Path, root: Path = ROOT) -> list[str]:
    """What a file of addons/ or capture_scripts/ imports against its package's rule."""
    name = path.relative_to(root).as_posix()
    package = name.split("/", 1)[0]
    wrong = []
    for line, module in imported_modules(path, root):
        parts = module.split(".")
        if name == HELPER:
            if parts[0] not in sys.stdlib_module_names:
                wrong.append(f"{name}:{line}: the root helper imports {module} (standard library only)")
        else:
            reaches_past = parts[0] == "analyzer" and (len(parts) < 2 or parts[1] not in OUTSIDE[package])
            if reaches_past or (parts[0] in OUTSIDE and parts[0] != package):
                wrong.append(f"{name}:{line}: {package} imports {module}")
    return wrong


@pytest.mark.parametrize(
    "path",
    [p for folder in sorted(OUTSIDE) for p in sorted((ROOT / folder).rglob("*.py"))],
    ids=lambda p: p.relative_to(ROOT).as_posix(),
)
def test_packages_beside_analyzer_use_only_its_lower_layers(path: Path) -> None:
    wrong = outside_violations(path)
    assert not wrong, "\n".join(wrong)


def test_analyzer_imports_neither_addons_nor_capture_scripts() -> None:
    wrong = [
        f"{path.relative_to(ROOT)}:{line}: analyzer imports {module}"
        for path in PACKAGE.rglob("*.py")
        for line, module in imported_modules(path)
        if module.split(".")[0] in OUTSIDE
    ]
    assert not wrong, "\n".join(wrong)


def framework_violations(path: Path, root: Path = ROOT) -> list[str]:
    """Imports of mitmproxy, click or Textual outside their one home."""
    name = path.relative_to(root).as_posix()
    return [
        f"{name}:{line}: imports {module} (only {', '.join(FRAMEWORK_HOMES[top])} may)"
        for line, module in imported_modules(path, root)
        if (top := module.split(".")[0]) in FRAMEWORK_HOMES
        and not any(name == home or (home.endswith("/") and name.startswith(home)) for home in FRAMEWORK_HOMES[top])
    ]


def test_frameworks_stay_in_their_home() -> None:
    wrong = [message for path in shipped_files() for message in framework_violations(path)]
    assert not wrong, "\n".join(wrong)


# --- tests of the tests: plant each kind of violation and expect the failure


def plant(root: Path, name: str, text: str) -> Path:
    path = root / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def test_the_check_catches_an_upward_import(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = tmp_path / "analyzer"
    bad = plant(tmp_path, "analyzer/protocol/bad.py", "from analyzer.store.log import read_log\nfrom . import record\n")
    monkeypatch.setattr(sys.modules[__name__], "PACKAGE", fake)
    assert [(line, layer) for line, layer, _ in imported_layers(bad)] == [(1, "store"), (2, "protocol")]
    with pytest.raises(AssertionError, match=r"protocol imports analyzer\.store\.log"):
        test_imports_point_downward("protocol", bad)


def test_the_check_sees_imports_inside_functions_and_import_module(tmp_path: Path) -> None:
    bad = plant(
        tmp_path,
        "capture_scripts/runner.py",
        "import importlib\n"
        "def later():\n"
        "    from analyzer.report import analyze\n"
        "    importlib.import_module('analyzer.cli.main')\n"
        "    from analyzer import export\n"
        "    from analyzer.pcap.batch import size_budget\n",
    )
    assert outside_violations(bad, tmp_path) == [
        "capture_scripts/runner.py:3: capture_scripts imports analyzer.report",
        "capture_scripts/runner.py:4: capture_scripts imports analyzer.cli.main",
        "capture_scripts/runner.py:5: capture_scripts imports analyzer.export",
    ]


def test_the_check_catches_addons_reaching_past_the_recorder(tmp_path: Path) -> None:
    bad = plant(
        tmp_path,
        "addons/ollama_log.py",
        "from analyzer.recorder.addons import build_addons\nfrom analyzer.store.log import read_log\n"
        "from analyzer import load_log\nimport capture_scripts.config\n",
    )
    assert outside_violations(bad, tmp_path) == [
        "addons/ollama_log.py:2: addons imports analyzer.store.log",
        "addons/ollama_log.py:3: addons imports analyzer.load_log",
        "addons/ollama_log.py:4: addons imports capture_scripts.config",
    ]


def test_the_check_keeps_the_root_helper_to_the_standard_library(tmp_path: Path) -> None:
    bad = plant(
        tmp_path,
        HELPER,
        "from __future__ import annotations\nimport os, fcntl\nimport yaml\n"
        "from capture_scripts import config\nfrom . import install\n",
    )
    assert outside_violations(bad, tmp_path) == [
        f"{HELPER}:3: the root helper imports yaml (standard library only)",
        f"{HELPER}:4: the root helper imports capture_scripts.config (standard library only)",
        f"{HELPER}:5: the root helper imports capture_scripts.install (standard library only)",
    ]


@pytest.mark.parametrize(
    ("name", "text", "expected"),
    [
        ("analyzer/store/log.py", "from mitmproxy import http\n", "analyzer/store/log.py:1: imports mitmproxy.http"),
        ("analyzer/report/page.py", "def f():\n    import click\n", "analyzer/report/page.py:2: imports click"),
        ("capture_scripts/runner.py", "import click\n", "capture_scripts/runner.py:1: imports click"),
        ("analyzer/live/paths.py", "from textual.app import App\n", "analyzer/live/paths.py:1: imports textual.app"),
        ("addons/x.py", "import mitmproxy\n", "addons/x.py:1: imports mitmproxy"),
    ],
)
def test_the_check_catches_a_framework_outside_its_home(tmp_path: Path, name: str, text: str, expected: str) -> None:
    found = framework_violations(plant(tmp_path, name, text), tmp_path)
    assert [message.split(" (only")[0] for message in found] == [expected]


def test_frameworks_in_their_home_pass(tmp_path: Path) -> None:
    for name, text in [
        ("analyzer/recorder/addon.py", "from mitmproxy import http\n"),
        ("capture_scripts/cli.py", "import click\n"),
        ("analyzer/cli/main.py", "import click\n"),
        ("analyzer/live/top/app.py", "from textual.app import App\n"),
    ]:
        assert framework_violations(plant(tmp_path, name, text), tmp_path) == []
