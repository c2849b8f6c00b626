"""The layering rules, checked on the source: the edges (api/, workers/, the CLI) may use the core and the
libraries; the core and the libraries never import an edge, a framework or the settings module; and no
module or package imports itself back through others."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("api", "workers", "orchestrator", "routing", "jobs", "audit", "telemetry", "solvers", "ratelimit",
            "webhooks")
CORE = ("orchestrator", "routing", "jobs", "audit", "solvers", "ratelimit", "webhooks")
FORBIDDEN_IN_CORE = ("api", "workers", "flask", "celery", "kombu", "settings", "gunicorn")
FORBIDDEN_IN_API = ("workers", "celery")


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """Every module a file imports, at any depth (imports inside functions count too)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def _graph() -> dict[str, set[str]]:
    files = [p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")]
    modules = {_module_name(p): p for p in files}
    graph = {}
    for name, path in modules.items():
        graph[name] = {m for m in _imports(path) if m in modules and m != name}
    return graph


def _top(module: str) -> str:
    return module.split(".")[0]


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one member (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in graph:
        if node not in index:
            visit(node)
    return found


@pytest.mark.parametrize("package", CORE)
def test_the_core_and_libraries_import_no_edge_framework_or_settings(package: str) -> None:
    offenders = {}
    for path in (ROOT / package).rglob("*.py"):
        bad = sorted(m for m in _imports(path) if _top(m) in FORBIDDEN_IN_CORE)
        if bad:
            offenders[str(path.relative_to(ROOT))] = bad
    assert not offenders, offenders


def test_the_ingress_never_loads_celery_or_the_workers() -> None:
    offenders = {}
    for path in (ROOT / "api").rglob("*.py"):
        bad = sorted(m for m in _imports(path) if _top(m) in FORBIDDEN_IN_API)
        if bad:
            offenders[str(path.relative_to(ROOT))] = bad
    assert not offenders, offenders


def test_no_module_imports_itself_back() -> None:
    assert _cycles(_graph()) == []


def test_no_package_imports_itself_back() -> None:
    packages: dict[str, set[str]] = {}
    for module, targets in _graph().items():
        packages.setdefault(_top(module), set()).update(_top(t) for t in targets if _top(t) != _top(module))
    assert _cycles(packages) == []


def test_the_cycle_finder_finds_cycles() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_the_walk_sees_imports_inside_functions(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text("import os\nfrom solvers.base import Verdict\n\ndef f():\n"
                      "    from solvers.qpu import EmulatedQpu\n    import celery.app\n")
    assert {"os", "solvers.base", "solvers.qpu", "celery.app"} <= _imports(module)


def test_qpu_adapters_import_the_base_not_each_other() -> None:
    graph = _graph()
    adapters = ("solvers.qpu", "solvers.qpu_ibm", "solvers.qpu_braket", "solvers.qpu_http")
    for adapter in adapters:
        assert "solvers.qpu_base" in graph[adapter]
        assert not graph[adapter] & {*adapters, "solvers.qpu_factory", "solvers.registry"}, adapter
