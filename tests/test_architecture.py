"""The house rules a reader relies on, checked: the engine's layers, the app's one door into
the engine, no import cycles, and rooms small enough to walk through.

import-linter reads the contracts in pyproject.toml. It finds packages on sys.path, and the
editable install maps `subq.engine` onto engine/ with an import hook it cannot follow, so
the check runs on a copy laid out as the installed package is.
"""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = {"engine": "subq.engine", "tui": "subq.tui"}
MAX_FILE_LINES = 400
MAX_CLASS_LINES = 300


def _sources() -> list[tuple[str, Path]]:
    """(module name, path) of every module of ours."""
    found = []
    for folder, package in PACKAGES.items():
        for path in sorted((ROOT / folder).rglob("*.py")):
            parts = path.relative_to(ROOT / folder).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found.append((".".join((package, *parts)), path))
    return found


def test_import_contracts_hold(tmp_path: Path) -> None:
    tree = tmp_path / "subq"
    tree.mkdir()
    (tree / "__init__.py").write_text("")
    for folder in PACKAGES:
        shutil.copytree(ROOT / folder, tree / folder, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    lint = Path(sys.executable).with_name("lint-imports")
    result = subprocess.run(
        [str(lint), "--no-cache"], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr


def _imports(module: str, path: Path) -> set[str]:
    """Every module of ours that `module` imports, at the top or inside a function."""
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                target = f"{base}.{node.module}" if node.module else base
            else:
                target = node.module or ""
            names.add(target)
            names.update(f"{target}.{alias.name}" for alias in node.names)
    return names


@pytest.mark.parametrize("package", ["subq.engine", "subq.tui"])
def test_no_import_cycles(package: str) -> None:
    """Counting imports made only for type checking too: in the app, screens and widgets
    reach the app through `self.app` typed by a protocol (tui/protocols.py), never by
    importing its module (the app, four screens and the palette once formed one circle)."""
    modules = {name: path for name, path in _sources() if name.startswith(package)}
    graph = {
        name: {m for m in _imports(name, path) if m in modules and m != name}
        for name, path in modules.items()
    }
    graph["subq.engine"] = set()  # the door's lazy re-exports import nothing at run time
    graph.pop("subq.tui", None)
    cycles: list[list[str]] = []
    state: dict[str, int] = {}

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append([*trail[trail.index(nxt) :], nxt])
            elif nxt not in state:
                visit(nxt, [*trail, nxt])
        state[node] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
    assert not cycles, "\n".join(" -> ".join(c) for c in cycles)


def test_rooms_stay_small() -> None:
    too_big = []
    for name, path in _sources():
        text = path.read_text()
        lines = text.count("\n")
        if lines > MAX_FILE_LINES:
            too_big.append(f"{path.relative_to(ROOT)}: {lines} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.ClassDef):
                size = (node.end_lineno or node.lineno) - node.lineno + 1
                if size > MAX_CLASS_LINES:
                    too_big.append(f"{name}.{node.name}: {size} lines")
    assert not too_big, "\n".join(too_big)
