"""The architecture, checked: frontends → core → backends → host, no import cycles.

Read from the source (every import, function-level ones too), so a shortcut that a reader
would not see in a module's header still counts. The vocabulary every layer shares (errors,
options, failpoints, progress reports, the schedule grammar) sits beneath all of them.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2] / "orlop"
VOCABULARY = {
    "orlop.core.model",
    "orlop.core.options",
    "orlop.core.failpoints",
    "orlop.core.progress",
    "orlop.core.schedule",
    "orlop.ops.counters",  # the metrics instruments every layer counts with
    "orlop.ops.reachability",  # whether each driver's backend answers, fed like counters
}
# The entry points wire everything together: they may import any layer.
TOP = ("orlop.cli", "orlop.daemon", "orlop.config", "orlop.managed", "orlop.__main__")
# Type-checking-only cycles (a backend half re-declaring its host class's attributes) were
# taken apart by the re-layout; none may come back.
KNOWN_TYPE_CHECKING_CYCLES: set[frozenset[str]] = set()


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for path in ROOT.rglob("*.py")}


def imports(module: str, type_checking: bool) -> Iterator[str]:
    """The orlop modules `module` imports; `type_checking`: those under TYPE_CHECKING only."""
    tree = ast.parse(MODULES[module].read_text())
    guarded = {
        id(node)
        for branch in ast.walk(tree)
        if isinstance(branch, ast.If) and "TYPE_CHECKING" in ast.unparse(branch.test)
        for node in ast.walk(branch)
    }
    for node in ast.walk(tree):
        if (id(node) in guarded) != type_checking:
            continue
        names: list[str] = []
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        for name in names:
            if name in MODULES and name != module:
                yield name


def allowed(importer: str, imported: str) -> bool:
    if imported in VOCABULARY or imported == "orlop" or importer.startswith(TOP):
        return True
    if importer in VOCABULARY:
        return False  # the vocabulary stands on nothing of Orlop's but itself
    layer = importer.split(".")[1]
    target = imported.split(".")[1]
    if layer == "host":
        return target == "host"
    if layer == "backends":
        return target in ("backends", "host")
    if layer == "core":
        return target in ("core", "host") or imported == "orlop.backends.base"
    if layer == "ops":
        return target in ("ops", "core")
    if layer == "frontends":
        own = ".".join(importer.split(".")[:3])
        return imported.startswith(own) or imported == "orlop.frontends.http" or target == "core"
    return False


def cycles(type_checking: bool) -> set[frozenset[str]]:
    """Strongly connected components of more than one module (Tarjan's algorithm)."""
    graph = {
        m: set(imports(m, False)) | (set(imports(m, True)) if type_checking else set())
        for m in MODULES
    }
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: set[frozenset[str]] = set()

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for other in graph[node]:
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = set()
            while True:
                member = stack.pop()
                component.add(member)
                if member == node:
                    break
            if len(component) > 1:
                found.add(frozenset(component))

    for module in sorted(MODULES):
        if module not in index:
            visit(module)
    return found


def test_no_layer_imports_upward_or_sideways() -> None:
    wrong = sorted(
        f"{module} imports {imported}"
        for module in MODULES
        for imported in imports(module, False)
        if not allowed(module, imported)
    )
    assert wrong == []


def test_no_import_cycles() -> None:
    assert cycles(type_checking=False) == set()


def test_no_type_checking_cycles_either() -> None:
    assert cycles(type_checking=True) == KNOWN_TYPE_CHECKING_CYCLES


def test_the_rules_catch_what_they_are_for() -> None:
    assert not allowed("orlop.host.btrfs", "orlop.backends.base")
    assert not allowed("orlop.core.snapshots", "orlop.backends.snapshots.options")
    assert not allowed("orlop.frontends.admin.api", "orlop.frontends.docker.plugin")
    assert not allowed("orlop.backends.block.backend", "orlop.core.service")
    assert allowed("orlop.core.service", "orlop.backends.base")
    assert allowed("orlop.frontends.docker.plugin", "orlop.core.service")
