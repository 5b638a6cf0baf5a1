"""The package's shape, read from its source with `ast`: which part may import which (every import
counts, also one inside a function or under TYPE_CHECKING), and no import circle outside sim/.

A part is a top-level module (`plan`, `cli`) or package (`engine`, `report`) of batchrun. The
layers, lowest first: the base (errors ... config), the stages (inputs, store, endpoint, engine,
analysis, report), the pipeline (plan, finish, workloads, the features batchapi, bench, preview,
twin, and pipeline.py that drives a run), and the faces (cli and what only it uses). Nothing
below the faces imports a face.
"""

from __future__ import annotations

import ast
from pathlib import Path

import batchrun

ROOT = Path(batchrun.__file__).parent

BASE = {"errors", "redact", "hooks", "values", "options", "config"}
STAGES = {"inputs", "store", "endpoint", "engine", "analysis", "report"}
ALLOWED: dict[str, set[str]] = {
    "errors": set(),
    "version": set(),
    "redact": set(),
    "hooks": set(),
    "interrupts": set(),
    "values": {"errors"},
    "options": {"errors", "values"},
    "config": {"errors", "redact", "values", "options"},
    # The built-in endpoint: base, and the fitted model of a twin it serves (twin/model.py, pure);
    # its `serve` face also handles Ctrl-C (interrupts) and fits a twin for --like (twin/load.py).
    "sim": BASE | {"interrupts", "twin"},
    "inputs": BASE,
    "store": BASE | {"inputs", "version"},
    "endpoint": BASE | {"inputs", "store", "sim"},
    "engine": BASE | {"inputs", "store", "endpoint", "analysis"},
    "analysis": BASE | {"inputs", "store"},
    "report": BASE | {"inputs", "store", "analysis", "version"},
    "workloads": BASE | {"inputs", "store", "endpoint", "engine"},
    "plan": BASE | {"inputs", "store", "endpoint", "engine", "workloads"},
    "finish": BASE | STAGES | {"sim"},
    "preview": BASE | STAGES | {"plan"},
    "batchapi": BASE | STAGES | {"plan", "finish", "sim"},
    "bench": BASE | STAGES | {"plan", "workloads", "sim"},
    "twin": BASE | STAGES | {"sim"},
    "pipeline": BASE | STAGES | {"plan", "finish", "workloads", "batchapi", "sim"},
}
# batchrun/__init__.py is the Python face's curated names (its part is "batchrun").
FACES = {"batchrun", "cli", "clidoc", "__main__", "api", "progress"}  # progress: the faces' bars
# Imports against the shape that a branch in flight removes (module -> module). The test fails
# when one of them is gone: then delete it here.
KNOWN: dict[tuple[str, str], str] = {
    ("batchrun.analysis.sides", "batchrun.report.summary"): "compare reads run directories through report/",
    ("batchrun.analysis.compare", "batchrun.report.format"): "compare's messages format with report/",
}


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in sorted(ROOT.rglob("*.py"))}


def _target(name: str) -> str:
    """The module an imported name lives in: itself if it is one, else the nearest package."""
    while name not in MODULES and "." in name:
        name = name.rsplit(".", 1)[0]
    return name


def _imports(module: str) -> set[str]:
    """Every batchrun module `module` imports, wherever the import statement stands."""
    package = module if MODULES[module].name == "__init__.py" else module.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(MODULES[module].read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: `from .x import y` inside a package
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
            names = [f"{base}.{a.name}" for a in node.names]
        else:
            continue
        found |= {_target(n) for n in names if n == "batchrun" or n.startswith("batchrun.")}
    return found - {module}


GRAPH = {module: _imports(module) for module in MODULES}


def _part(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "batchrun"


def _part_of_target(module: str) -> str:
    return _part(module)


def test_every_part_imports_only_what_it_may() -> None:
    wrong = []
    for module, targets in GRAPH.items():
        part = _part(module)
        if part in FACES or part == "batchrun":
            continue
        assert part in ALLOWED, f"{module}: a new part of batchrun; say in ALLOWED what it may import"
        for target in targets:
            other = _part_of_target(target)
            if other != part and other not in ALLOWED[part] and (module, target) not in KNOWN:
                wrong.append(f"{module} imports {target} ({part} may import {sorted(ALLOWED[part])})")
    assert not wrong, "\n".join(sorted(wrong))


def test_the_known_exceptions_still_exist() -> None:
    gone = [pair for pair in KNOWN if pair[1] not in GRAPH.get(pair[0], set())]
    assert not gone, f"no longer imported, delete from KNOWN: {gone}"


def test_nothing_below_the_faces_imports_a_face() -> None:
    wrong = [
        f"{m} imports {t}"
        for m, targets in GRAPH.items()
        for t in targets
        if _part(t) in FACES and _part(m) not in FACES
    ]
    assert not wrong, "\n".join(wrong)


def test_no_import_circle_outside_sim() -> None:
    graph = {
        m: {t for t in ts if not t.startswith("batchrun.sim")}
        for m, ts in GRAPH.items()
        if not m.startswith("batchrun.sim")
    }
    circles = [sorted(c) for c in _strongly_connected(graph) if len(c) > 1]
    assert not circles, "import circles:\n" + "\n".join(" <-> ".join(c) for c in circles)


def _strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm, iterative: the graph's strongly connected components."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph.get(root, ()))))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                found.append(component)
    return found


def test_the_circle_finder_finds_a_circle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert sorted(sorted(c) for c in _strongly_connected(graph) if len(c) > 1) == [["a", "b", "c"]]
