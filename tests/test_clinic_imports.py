"""The clinic package's import graph: no cycles, and device/ stays free of Flask."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def import_graph(package: str) -> dict[str, set[str]]:
    """Module -> the modules of ``package`` it imports (at any level, lazy imports too)."""
    modules = {_module_name(p): p for p in (ROOT / package).rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module:
                base = node.module
                if node.level:  # relative: from the module's own package, up level - 1
                    package_parts = name.split(".")
                    if path.name != "__init__.py":
                        package_parts.pop()
                    up = len(package_parts) - (node.level - 1)
                    base = ".".join([*package_parts[:up], node.module])
                targets.add(base)
                targets.update(f"{base}.{alias.name}" for alias in node.names)
        graph[name] = {t for t in targets if t in modules and t != name and t != package}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str]:
    """One import cycle as a list of modules (first == last), or [] when there is none."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    stack: list[str] = []

    def visit(node: str) -> list[str]:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return []

    for start in sorted(graph):
        if start not in state and (cycle := visit(start)):
            return cycle
    return []


def test_the_cycle_finder_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) == []


def test_the_clinic_package_has_no_import_cycle():
    graph = import_graph("clinic")
    assert "clinic.views" in graph and "clinic.app" in graph["clinic.cli"]
    assert "clinic.views" in graph["clinic.app"]  # the factory registers the pages
    assert "clinic.app" not in graph["clinic.views"]
    assert find_cycle(graph) == []


def test_the_clinic_app_moved_out_of_training():
    assert (ROOT / "clinic" / "templates" / "upload.html").is_file()
    assert not (ROOT / "training" / "clinic").exists()


def test_importing_the_device_cli_imports_no_flask():
    code = (
        "import sys, device.cli, device.bench.cli; "
        "heavy = {'flask', 'flask_wtf', 'waitress', 'werkzeug', 'argon2'} & set(sys.modules); "
        "sys.exit(','.join(sorted(heavy)) or 0)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr + done.stdout
