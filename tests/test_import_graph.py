"""The import graph of the product packages, read from their source (no imports run).

Arrows run one way: ``conversion`` and ``clinic`` may use ``training`` and ``device``;
``training`` never uses ``conversion``; ``device`` (the Pi) never loads TensorFlow,
Flask or the desktop packages when its modules are imported; and no two modules
import each other, directly or around a loop, at any level (a lazy import inside a
function still ties the two modules together).

The clinic app lives in ``clinic/``, read like the other packages.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("device", "training", "conversion", "clinic")
# Not installed (pyproject excludes them): reports and one-off experiment scripts.
NOT_PRODUCT = ("training.reports", "training.experiments")
DEVICE_FORBIDDEN = ("training", "conversion", "clinic", "tensorflow", "keras", "flask")


@dataclass(frozen=True)
class Import:
    """One import statement: who imports what, and whether it runs at import time."""

    importer: str
    target: str
    module_level: bool
    line: int


def module_name(path: Path) -> str:
    """``training/model.py`` -> ``training.model``; a package's __init__ is the package."""
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def source_files() -> dict[str, Path]:
    """Every Python module of the packages that exist in this checkout."""
    files = {}
    for package in PACKAGES:
        folder = ROOT / package
        if folder.is_dir():
            for path in sorted(folder.rglob("*.py")):
                files[module_name(path)] = path
    return files


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _walk(node: ast.AST, module_level: bool) -> Iterator[tuple[ast.AST, bool]]:
    """Yield every node with whether it runs when the module is imported."""
    for child in ast.iter_child_nodes(node):
        inside_function = isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda)
        type_only = isinstance(child, ast.If) and _is_type_checking(child)
        yield child, module_level
        yield from _walk(child, module_level and not inside_function and not type_only)


def _resolve(name: str, known: set[str]) -> str:
    """The longest known module that ``name`` lies in (``a.b.func`` -> ``a.b``), else ``name``."""
    parts = name.split(".")
    for end in range(len(parts), 0, -1):
        candidate = ".".join(parts[:end])
        if candidate in known:
            return candidate
    return name


def imports_of(name: str, path: Path, known: set[str]) -> list[Import]:
    """The imports of one module, relative imports resolved, names mapped to modules."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node, module_level in _walk(tree, True):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            targets = [f"{base}.{alias.name}" for alias in node.names]
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "import_module"
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            targets = [node.args[0].value]
        for target in targets:
            found.append(Import(name, _resolve(target, known), module_level, node.lineno))
    return found


def import_graph() -> list[Import]:
    """Every import of every module in the packages."""
    files = source_files()
    known = set(files)
    return [imp for name, path in files.items() for imp in imports_of(name, path, known)]


def _in(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def is_product(module: str) -> bool:
    """Part of an installed package (not a report or an experiment script)."""
    return not any(_in(module, excluded) for excluded in NOT_PRODUCT)


def cycles(edges: list[Import]) -> list[list[str]]:
    """Strongly connected groups of more than one module (Tarjan), and self-imports."""
    graph: dict[str, set[str]] = {}
    for imp in edges:
        graph.setdefault(imp.importer, set()).add(imp.target)
        graph.setdefault(imp.target, set())
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1 or node in graph[node]:
                groups.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return groups


def _internal(edges: list[Import]) -> list[Import]:
    """Imports between modules of the packages (the ones a cycle can run through)."""
    known = set(source_files())
    return [imp for imp in edges if imp.target in known and imp.target != imp.importer]


def _where(imp: Import) -> str:
    return f"{imp.importer} imports {imp.target} (line {imp.line})"


@pytest.fixture(scope="module")
def edges() -> list[Import]:
    return import_graph()


def test_the_graph_is_read_from_every_package(edges: list[Import]) -> None:
    importers = {imp.importer.split(".")[0] for imp in edges}
    assert {"device", "training", "conversion"} <= importers
    # Imports inside functions are seen too, and told apart from module-level ones.
    assert {imp.module_level for imp in edges} == {True, False}


def test_no_module_imports_itself_around_a_loop(edges: list[Import]) -> None:
    product = [i for i in _internal(edges) if is_product(i.importer) and is_product(i.target)]
    loops = cycles(product)
    assert not loops, "modules that import each other: " + "; ".join(" <-> ".join(g) for g in loops)


def test_device_loads_no_desktop_package_when_imported(edges: list[Import]) -> None:
    bad = sorted(
        {
            _where(imp)
            for imp in edges
            if _in(imp.importer, "device")
            and imp.module_level
            and any(_in(imp.target, forbidden) for forbidden in DEVICE_FORBIDDEN)
        }
    )
    assert not bad, "\n".join(bad)


def test_training_never_imports_conversion(edges: list[Import]) -> None:
    bad = sorted(
        {
            _where(imp)
            for imp in edges
            if _in(imp.importer, "training")
            and is_product(imp.importer)
            and _in(imp.target, "conversion")
        }
    )
    assert not bad, "\n".join(bad)


def test_no_product_module_imports_an_experiment(edges: list[Import]) -> None:
    bad = sorted(
        {
            _where(imp)
            for imp in edges
            if is_product(imp.importer)
            and not is_product(imp.target)
            and _in(imp.target, "training")
        }
    )
    assert not bad, "\n".join(bad)


def test_the_cycle_finder_finds_a_lazy_loop() -> None:
    loop = [
        Import("training.train", "training.distributed", False, 1),
        Import("training.distributed", "training.train", False, 2),
        Import("training.train", "training.data", True, 3),
    ]
    assert cycles(loop) == [["training.distributed", "training.train"]]
