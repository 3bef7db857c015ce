"""Structure of the rover packages: no import cycle, a public API that imports lightly.

The cycle check reads the source with :mod:`ast`, so it sees imports inside functions (lazy
imports hide a cycle from a plain ``import`` but not from this graph).
"""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
ROVER_PACKAGES = ("edge_runtime", "device_sim")


def module_files(root: Path, packages: tuple[str, ...]) -> dict[str, Path]:
    """Dotted module name -> file, for every ``.py`` file of ``packages`` under ``root``."""
    out = {}
    for pkg in packages:
        for p in sorted((root / pkg).rglob("*.py")):
            parts = p.relative_to(root).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join(parts)] = p
    return out


def import_graph(root: Path, packages: tuple[str, ...]) -> dict[str, set[str]]:
    """Module -> the modules of ``packages`` it imports anywhere in its source (module level,
    inside functions, under ``TYPE_CHECKING``). ``from pkg import name`` points at
    ``pkg.name`` when that is a module, else at ``pkg``."""
    files = module_files(root, packages)
    graph: dict[str, set[str]] = {m: set() for m in files}
    for mod, path in files.items():
        is_pkg = path.name == "__init__.py"
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:  # relative import
                    anchor = mod.split(".") if is_pkg else mod.split(".")[:-1]
                    anchor = anchor[:len(anchor) - (node.level - 1)]
                    base = ".".join([*anchor, base] if base else anchor)
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in files else base
                           for a in node.names]
            for t in targets:
                while t and t not in files:  # ``import a.b.c`` of a non-module: its package
                    t = t.rpartition(".")[0]
                if t and t != mod:
                    graph[mod].add(t)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of ``graph`` as ``[a, b, ..., a]``, or ``None``."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(m: str) -> list[str] | None:
        state[m] = 1
        path.append(m)
        for n in sorted(graph.get(m, ())):
            if state.get(n) == 1:
                return [*path[path.index(n):], n]
            if n not in state:
                found = visit(n)
                if found:
                    return found
        path.pop()
        state[m] = 2
        return None

    for m in sorted(graph):
        if m not in state:
            found = visit(m)
            if found:
                return found
    return None


def test_rover_packages_have_no_import_cycle():
    graph = import_graph(REPO, ROVER_PACKAGES)
    assert {"edge_runtime.classify", "edge_runtime.headstore", "device_sim.device"} <= set(graph)
    assert "edge_runtime.headstore" in graph["edge_runtime.classify"]  # one direction only
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_cycle_check_sees_lazy_and_relative_imports(tmp_path):
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("import os\nfrom pkg import b\n")
    (pkg / "b.py").write_text("def f():\n    from .c import g\n    return g\n")
    (pkg / "c.py").write_text("def g():\n    import pkg.a\n")
    graph = import_graph(tmp_path, ("pkg",))
    assert graph["pkg.a"] == {"pkg.b"} and graph["pkg.b"] == {"pkg.c"}
    assert find_cycle(graph) == ["pkg.a", "pkg.b", "pkg.c", "pkg.a"]
    (pkg / "c.py").write_text("def g():\n    import pkg\n")  # the package, not a
    assert find_cycle(import_graph(tmp_path, ("pkg",))) is None


@pytest.mark.parametrize("package", ROVER_PACKAGES)
def test_public_api_is_exported_and_documented(package):
    pkg = importlib.import_module(package)
    exported = {n for names in pkg._EXPORTS.values() for n in names}
    assert set(pkg.__all__) == exported and len(pkg.__all__) == len(exported)
    for module, names in pkg._EXPORTS.items():
        sub = importlib.import_module(f"{package}.{module}")
        for name in names:
            assert getattr(pkg, name) is getattr(sub, name)
            assert name in pkg.__doc__, f"{name} is not in {package}'s docstring"
    assert set(pkg.__all__) <= set(dir(pkg))
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        pkg.nope  # noqa: B018


def test_importing_the_packages_stays_light():
    """``import edge_runtime, device_sim`` loads none of their modules, numpy or TFLite."""
    code = ("import sys\nimport edge_runtime, device_sim\n"
            "print(sorted(m for m in sys.modules if m.startswith(('edge_runtime.', "
            "'device_sim.', 'numpy', 'ai_edge_litert', 'tflite_runtime', 'serial'))))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, cwd=REPO)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
