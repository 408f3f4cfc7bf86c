"""The project's import graph: no cycles, no reaching into another package's private modules,
plugins (`search_spaces`, `predictors`) on `nas`'s public API only, and a light ``import nas``."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import networkx as nx

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("nas", "search_spaces", "predictors")
PLUGINS = ("search_spaces", "predictors")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for package in PACKAGES for p in sorted((ROOT / package).rglob("*.py"))}


def _type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(name: str, path: Path, modules: dict[str, Path]) -> list[tuple[str, int]]:
    """``(imported project module, line)`` for each import statement of module `name` (TYPE_CHECKING blocks left out)."""
    tree = ast.parse(path.read_text(), str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    skip = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If) and _type_checking(node) for n in ast.walk(node)}
    out = []
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            out += [(a.name, node.lineno) for a in node.names if a.name.split(".")[0] in PACKAGES]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            if base.split(".")[0] not in PACKAGES:
                continue
            for alias in node.names:  # `from nas.searchers import _base` imports a module
                full = f"{base}.{alias.name}"
                out.append((full if full in modules else base, node.lineno))
    return out


def _graph() -> tuple[nx.DiGraph, dict[tuple[str, str], int]]:
    modules = _modules()
    graph, lines = nx.DiGraph(), {}
    graph.add_nodes_from(modules)
    for name, path in modules.items():
        for target, line in _imports(name, path, modules):
            if target != name and target in modules:
                graph.add_edge(name, target)
                lines[(name, target)] = line
    return graph, lines


def _private(module: str) -> bool:
    return any(part.startswith("_") and part != "__init__" for part in module.split("."))


def _owner(module: str) -> str:
    """The package a module belongs to: its name up to its first private part (nas.searchers._base -> nas.searchers)."""
    parts = module.split(".")
    for i, part in enumerate(parts):
        if part.startswith("_"):
            return ".".join(parts[:i])
    return module.rpartition(".")[0] or module


def test_the_import_graph_covers_the_project():
    graph, _ = _graph()
    assert {"nas", "nas.searching", "nas.methods._base", "search_spaces.mlp", "predictors._base"} <= set(graph)
    assert graph.has_edge("nas", "nas.searching") and graph.has_edge("nas.methods._blackbox", "nas.searchers")


def test_no_import_cycles_among_the_projects_modules():
    graph, lines = _graph()
    cycles = [c for c in nx.simple_cycles(graph) if len(c) > 1]
    described = [" -> ".join(f"{a} (line {lines[(a, b)]})" for a, b in zip(c, c[1:] + c[:1])) for c in cycles[:5]]
    assert not cycles, "import cycles:\n" + "\n".join(described)


def test_no_module_imports_another_packages_private_module():
    graph, lines = _graph()
    bad = [
        f"{a} imports {b} (line {lines[(a, b)]})"
        for a, b in graph.edges
        if _private(b) and not (a == _owner(b) or a.startswith(_owner(b) + "."))
    ]
    assert not bad, "\n".join(bad)


def test_plugins_import_only_public_nas_modules_and_nas_reaches_them_only_through_its_registries():
    graph, lines = _graph()
    private = [f"{a} imports {b} (line {lines[(a, b)]})" for a, b in graph.edges if a.split(".")[0] in PLUGINS and b.split(".")[0] == "nas" and _private(b)]
    assert not private, "\n".join(private)
    direct = [f"{a} imports {b} (line {lines[(a, b)]})" for a, b in graph.edges if a.split(".")[0] == "nas" and b.split(".")[0] in PLUGINS]
    assert not direct, "nas must reach plugins through its registries:\n" + "\n".join(direct)


def test_import_nas_does_not_import_ray_onnx_or_matplotlib():
    code = "import sys, nas; print(sorted(m for m in ('ray', 'onnx', 'onnxruntime', 'matplotlib') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
