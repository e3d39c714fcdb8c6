"""The package layout's rules, checked over the source: layers import inward only, and no cycles.

Every ``import`` and ``from ... import`` in ``pipeline/`` is read with :mod:`ast` (function-level
imports included, ``if TYPE_CHECKING:`` blocks excluded: they never run). Two rules follow:

* a package may import only the packages its row in :data:`ALLOWED` names (see
  docs/architecture.md): the pure core imports nothing of the pipeline and no I/O library, an
  adapter never imports the runtime or the command line, nothing imports the command line;
* the module import graph has no cycle (a cycle is reported with every module in it).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "pipeline"

CORE = {"state_machine"}
INNER = {"state_machine", "contracts", "config"}

#: package -> the other pipeline packages it may import (inward, or a sibling adapter's public API).
ALLOWED: dict[str, set[str]] = {
    "state_machine": set(),
    "contracts": {"state_machine"},
    "config": {"state_machine", "contracts"},
    "ops": INNER,
    "kafka": INNER | {"ops"},
    "storage": INNER | {"ops"},
    "consumers": INNER | {"ops", "kafka", "storage"},
    "collector": INNER | {"ops", "kafka"},
    "webhooks": INNER | {"ops", "kafka"},
    "offline": INNER | {"storage"},
    "streaming": INNER | {"ops", "kafka", "storage", "consumers"},
    "devtools": INNER | {"ops", "kafka", "streaming"},
    "console": INNER | {"ops", "kafka", "storage"},
    "cli": INNER | {"ops", "kafka", "storage", "consumers", "collector", "webhooks", "offline", "streaming",
                    "devtools", "console", "cli"},
}

#: Libraries the pure core never imports: brokers, databases, metrics, HTTP, the clock and chance.
CORE_FORBIDDEN = {"faust", "kafka", "aiokafka", "sqlalchemy", "alembic", "prometheus_client", "aiohttp",
                  "psycopg", "random", "time", "asyncio"}


def modules() -> dict[str, Path]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


def _runtime_nodes(tree: ast.AST) -> Iterator[ast.AST]:
    """Every node except those under ``if TYPE_CHECKING:``."""
    stack: list[ast.AST] = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            stack.extend(node.orelse)
            continue
        yield node
        stack.extend(ast.iter_child_nodes(node))


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """The imported names of ``name`` (absolute; relative imports resolved), pipeline modules
    resolved to the longest known module (``from pipeline.x import y`` is module ``pipeline.x.y``
    when that is a module)."""
    is_package = path.name == "__init__.py"
    package = name if is_package else name.rpartition(".")[0]
    found: set[str] = set()
    for node in _runtime_nodes(ast.parse(path.read_text("utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            found.add(target)
            for alias in node.names:
                if f"{target}.{alias.name}" in known:
                    found.add(f"{target}.{alias.name}")
    return found


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    found = modules()
    known = set(found)
    return {name: imports_of(name, path, known) for name, path in found.items()}


def top_package(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if parts[0] == "pipeline" and len(parts) > 1 else None


def test_pipeline_has_no_loose_modules() -> None:
    loose = sorted(p.name for p in PACKAGE.glob("*.py") if p.name not in {"__init__.py", "__main__.py"})
    assert loose == [], f"modules outside a package folder: {loose}"


def test_every_package_has_a_row_in_the_layer_table() -> None:
    packages = {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").exists()}
    assert packages <= set(ALLOWED), f"add a row to ALLOWED for {sorted(packages - set(ALLOWED))}"


def test_packages_import_inward_only(graph: dict[str, set[str]]) -> None:
    wrong = []
    for module, imported in graph.items():
        own = top_package(module)
        if own is None:
            continue
        for target in imported:
            other = top_package(target)
            if other is not None and other != own and other not in ALLOWED[own]:
                wrong.append(f"{module} imports {target} ({own} may import: {sorted(ALLOWED[own]) or 'nothing'})")
    assert wrong == []


def test_the_core_imports_no_io_library(graph: dict[str, set[str]]) -> None:
    wrong = [
        f"{module} imports {target}"
        for module, imported in graph.items()
        if top_package(module) in CORE
        for target in imported
        if target.split(".")[0] in CORE_FORBIDDEN
    ]
    assert wrong == []


def test_no_import_cycles(graph: dict[str, set[str]]) -> None:
    edges = {m: {t for t in targets if t in graph and t != m} for m, targets in graph.items()}
    # A package's __init__ re-exporting its own modules is not a cycle of meaning: drop edges from a
    # module to the package that contains it (importing a submodule runs its package first anyway).
    for module in edges:
        edges[module] = {t for t in edges[module] if not module.startswith(t + ".")}
    cycles = _strongly_connected(edges)
    assert cycles == [], "import cycles:\n" + "\n".join(" -> ".join(sorted(c)) for c in cycles)


def _strongly_connected(edges: dict[str, set[str]]) -> list[set[str]]:
    """Tarjan's algorithm; the components with more than one module."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    result: list[set[str]] = []
    counter = 0

    def visit(node: str) -> None:
        nonlocal counter
        index[node] = low[node] = counter
        counter += 1
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(edges[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = set()
            while True:
                item = stack.pop()
                on_stack.discard(item)
                component.add(item)
                if item == node:
                    break
            if len(component) > 1:
                result.append(component)

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return result


def test_the_checker_finds_a_cycle_and_an_outward_import() -> None:
    """The rules above can fail: a hand-made cycle is found, and so is the core importing out."""
    assert _strongly_connected({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [{"a", "b", "c"}]
    assert "kafka" not in ALLOWED["state_machine"] and "cli" not in ALLOWED["streaming"]
