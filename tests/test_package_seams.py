"""The package's seams, read from the source: library modules never depend on the CLI, private
names stay inside their package, no two modules import each other (lazy imports included),
and collectives live only in ``gandist/engine/``."""

from __future__ import annotations

import ast
import re
from collections import defaultdict
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "gandist"


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _package_of(module: str) -> str:
    """The package a module belongs to (a package's ``__init__`` belongs to itself)."""
    return module if (PACKAGE.parent / module.replace(".", "/") / "__init__.py").exists() else module.rsplit(".", 1)[0]


def _resolve(dotted: str) -> str | None:
    """The gandist module that ``dotted`` (a module, or a module's attribute) lives in."""
    while dotted and dotted not in MODULES:
        dotted = dotted.rpartition(".")[0]
    return dotted or None


def imports(module: str) -> list[tuple[str, str, int]]:
    """(imported gandist module, imported name or '', line) for every import in ``module``,
    at the top or inside functions."""
    out = []
    for node in ast.walk(ast.parse(MODULES[module].read_text())):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module and node.module.split(".")[0] == "gandist":
            for alias in node.names:
                target = _resolve(f"{node.module}.{alias.name}")
                name = "" if target == f"{node.module}.{alias.name}" else alias.name
                out.append((target, name, node.lineno))
        elif isinstance(node, ast.Import):
            out += [(_resolve(a.name), "", node.lineno) for a in node.names if a.name.split(".")[0] == "gandist"]
    return out


def test_the_scan_sees_the_package():
    assert {"gandist.cli", "gandist.commands.bench", "gandist.data.stream", "gandist.engine.zero"} <= set(MODULES)
    assert ("gandist.data.stream", "ImageStream") in {(t, n) for t, n, _ in imports("gandist.data")}


def test_no_library_module_imports_the_cli():
    offenders = [f"{m}:{line} imports {t}" for m in MODULES if not (m.startswith("gandist.commands") or m == "gandist.cli")
                 for t, _, line in imports(m) if t == "gandist.commands" or t.startswith("gandist.commands.")]
    assert not offenders, "library code depends on a CLI module:\n" + "\n".join(offenders)


def test_private_names_stay_inside_their_package():
    offenders = [f"{m}:{line} imports {t}.{name}" for m in MODULES for t, name, line in imports(m)
                 if name.startswith("_") and not name.startswith("__") and _package_of(t) != _package_of(m)]
    assert not offenders, "private names cross packages:\n" + "\n".join(offenders)


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_cycle_finder_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_circle():
    graph: dict[str, set[str]] = defaultdict(set)
    for m in MODULES:
        graph[m] |= {t for t, _, _ in imports(m) if t != m}
    assert not _cycles(graph), f"modules that import each other (directly or around a circle): {_cycles(graph)}"


DIST = re.compile(r"\btorch\.distributed\b|\bimport torch\.distributed\b|\bdist\.(all_reduce|all_gather|broadcast|barrier|"
                  r"init_process_group|destroy_process_group|reduce|gather|scatter|is_initialized|get_rank|get_world_size)\b")


@pytest.mark.parametrize("text, hit", [("import torch.distributed as dist", True), ("dist.all_reduce(t)", True),
                                       ("from gandist.engine import ProcessGroup", False)])
def test_collective_pattern(text, hit):
    assert bool(DIST.search(text)) is hit


def test_collectives_only_in_the_engine():
    offenders = [f"{m}: {line.strip()}" for m, path in MODULES.items() if not m.startswith("gandist.engine")
                 for line in path.read_text().splitlines() if DIST.search(line.split("#")[0])]
    assert not offenders, "torch.distributed used outside gandist/engine/:\n" + "\n".join(offenders)
