"""The layer picture in analyzer/__init__.py stays true: every import inside ``analyzer`` points downward.

Each layer (a folder under analyzer/) names the layers it may import; an upward or sideways import fails this
test with the file, line and offending import.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "analyzer"

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
        }
    ),
}


def imported_layers(path: Path) -> list[tuple[int, str, str]]:
    """(line, layer, module) for every ``analyzer.<layer>`` import in ``path`` (relative imports resolved)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts[:-1])
    found = []
    for node in ast.walk(tree):
        modules: list[str] = []
        if isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                modules = [".".join([*base, node.module] if node.module else base)]
            elif node.module:
                modules = [node.module]
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "import_module" and node.args:
            argument = node.args[0]
            if isinstance(argument, ast.Constant) and isinstance(argument.value, str):
                modules = [argument.value]
        for module in modules:
            parts = module.split(".")
            if parts[0] == "analyzer" and len(parts) > 1:
                found.append((node.lineno, parts[1], module))
    return found


def layer_files() -> list[tuple[str, Path]]:
    return [
        (folder.name, path)
        for folder in sorted(PACKAGE.iterdir())
        if folder.is_dir() and (folder / "__init__.py").exists()
        for path in sorted(folder.rglob("*.py"))
    ]


def test_every_layer_is_known_and_documented() -> None:
    for folder in PACKAGE.iterdir():
        if folder.is_dir() and (folder / "__init__.py").exists():
            assert folder.name in ALLOWED, f"analyzer/{folder.name}/ is not in the layer map of {__file__}"
            docstring = ast.get_docstring(ast.parse((folder / "__init__.py").read_text(encoding="utf-8")))
            assert docstring and len(docstring) > 80, f"analyzer/{folder.name}/__init__.py needs a docstring"


def test_no_flat_modules_beside_the_layers() -> None:
    assert sorted(p.name for p in PACKAGE.glob("*.py")) == ["__init__.py"]


@pytest.mark.parametrize(("layer", "path"), layer_files(), ids=lambda v: str(v).rsplit("analyzer/", 1)[-1])
def test_imports_point_downward(layer: str, path: Path) -> None:
    wrong = [
        f"{path.relative_to(PACKAGE.parent)}:{line}: {layer} imports {module}"
        for line, target, module in imported_layers(path)
        if target != layer and target not in ALLOWED[layer]
    ]
    assert not wrong, "\n".join(wrong)


def test_the_check_catches_an_upward_import(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = tmp_path / "analyzer"
    (fake / "protocol").mkdir(parents=True)
    bad = fake / "protocol" / "bad.py"
    bad.write_text("from analyzer.store.log import read_log\nfrom . import record\n")
    monkeypatch.setattr(__import__(__name__), "PACKAGE", fake)
    assert [(line, layer) for line, layer, _ in imported_layers(bad)] == [(1, "store"), (2, "protocol")]
    with pytest.raises(AssertionError, match=r"protocol imports analyzer\.store\.log"):
        test_imports_point_downward("protocol", bad)
