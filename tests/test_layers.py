"""The house's layers point one way: the import graph of ``engram_numba`` read from source.

Layers, lowest first (a module may import from its own layer or a lower one)::

    core        private top-level modules (_*.py), clock, errors
    metrics/, tracing/
    export/
    viz
    engram/
    cli, dask, __main__, the package facade (engram_numba/__init__.py)

The graph is read with ``ast``: every import statement counts, at module level,
inside functions and under ``if TYPE_CHECKING:`` alike (a local import that
breaks a cycle at import time still ties two modules together), relative
imports resolved.  An edge is a violation when it points to a higher layer or
lies on a cycle (both ends in one strongly connected component).
"""

from __future__ import annotations

import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent / "engram_numba"

CORE, DOMAIN, EXPORT, VIZ, ENGRAM, ENTRY = range(6)
LAYER_NAMES = ("core", "metrics/tracing", "export/gpu", "viz", "engram", "entry points")
# gpu (numba's CUDA target) sits beside export: it builds on metrics and tracing, and
# nothing below reaches it except through the device registry in _kernel_arg
_PACKAGES = {"metrics": DOMAIN, "tracing": DOMAIN, "export": EXPORT, "gpu": EXPORT,
             "engram": ENGRAM}
_TOP = {"viz": VIZ, "cli": ENTRY, "dask": ENTRY, "__main__": ENTRY, "clock": CORE,
        "errors": CORE}

# Violations tolerated for now, each as (kind, from, to): none.  The test fails on an entry
# that is no longer a violation, so this list cannot go stale.
PENDING: set = set()


def module_names(root: pathlib.Path) -> dict:
    """``{dotted name: (path, is_package)}`` of every module under ``root``."""
    out = {}
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        if is_package:
            parts = parts[:-1]
        out[".".join(parts)] = (path, is_package)
    return out


def import_graph(root: pathlib.Path = ROOT) -> dict:
    """``{module: {modules it imports}}`` within the package, every import statement read."""
    modules = module_names(root)
    top = root.name
    graph = {}
    for name, (path, is_package) in modules.items():
        package = name if is_package else name.rpartition(".")[0]
        targets = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")
                    base = base[:len(base) - (node.level - 1)]
                    source = ".".join(base + ([node.module] if node.module else []))
                else:
                    source = node.module or ""
                for a in node.names:   # "from pkg import module" names the module itself
                    sub = f"{source}.{a.name}"
                    targets.add(sub if sub in modules else source)
        graph[name] = {t for t in targets
                       if t in modules and t != name and (t == top or t.startswith(top + "."))}
    return graph


def layer(module: str) -> int:
    parts = module.split(".")[1:]
    if not parts:
        return ENTRY                                # the package facade
    if parts[0] in _PACKAGES:
        return _PACKAGES[parts[0]]
    if len(parts) == 1 and (parts[0] in _TOP or parts[0].startswith("_")):
        return _TOP.get(parts[0], CORE)
    raise AssertionError(f"{module} is in no layer: add it to the table in {__name__}")


def _components(graph: dict) -> dict:
    """Each module's strongly connected component (Tarjan), as a frozenset."""
    index, low, stack, on_stack, out = {}, {}, [], set(), {}

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            members = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                members.append(w)
                if w == v:
                    break
            for w in members:
                out[w] = frozenset(members)

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def violations(graph: dict) -> set:
    """``("upward", a, b)`` for an import of a higher layer, ``("cycle", a, b)`` for an
    import on a cycle; names without the package prefix."""
    def short(m):
        return m.split(".", 1)[1] if "." in m else m
    component = _components(graph)
    found = set()
    for a, targets in graph.items():
        for b in targets:
            if layer(b) > layer(a):
                found.add(("upward", short(a), short(b)))
            if b in component[a]:
                found.add(("cycle", short(a), short(b)))
    return found


def _full(short: str) -> str:
    return short if short == ROOT.name else f"{ROOT.name}.{short}"


def _listing(items, graph_layers=True) -> str:
    def describe(v):
        kind, a, b = v
        if kind == "upward" and graph_layers:
            la, lb = (LAYER_NAMES[layer(_full(m))] for m in (a, b))
            return f"  {a} -> {b}  ({la} imports {lb})"
        return f"  {a} -> {b}  ({kind})"
    return "\n".join(describe(v) for v in sorted(items))


def test_imports_point_down_and_close_no_cycle():
    found = violations(import_graph())
    new = found - PENDING
    stale = PENDING - found
    if found:
        print("layer violations still pending:\n" + _listing(found & PENDING))
    assert not new, ("imports that point up a layer or close a cycle:\n" + _listing(new) +
                     "\nmove the shared piece down a layer instead")
    assert not stale, ("PENDING lists edges that are no longer violations; remove them:\n"
                       + _listing(stale, graph_layers=False))


def test_every_module_has_a_layer():
    for name in module_names(ROOT):
        layer(name)


def _tree(tmp_path, files: dict) -> pathlib.Path:
    root = tmp_path / "engram_numba"
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def test_the_reader_sees_local_type_checking_and_relative_imports(tmp_path):
    root = _tree(tmp_path, {
        "__init__.py": "",
        "_low.py": "def f():\n    from .metrics import spec\n",
        "metrics/__init__.py": "from . import spec\n",
        "metrics/spec.py": ("import typing\nif typing.TYPE_CHECKING:\n"
                            "    from ..export.json import x\n"),
        "metrics/snapshot.py": "from .. import viz\nfrom engram_numba.metrics.spec import y\n",
        "export/__init__.py": "",
        "export/json.py": "from ..metrics import snapshot\n",
        "viz.py": "import engram_numba.export\n",
    })
    graph = import_graph(root)
    assert graph["engram_numba._low"] == {"engram_numba.metrics.spec"}
    assert graph["engram_numba.metrics"] == {"engram_numba.metrics.spec"}
    assert graph["engram_numba.metrics.spec"] == {"engram_numba.export.json"}
    assert graph["engram_numba.metrics.snapshot"] == {"engram_numba.viz",
                                                      "engram_numba.metrics.spec"}
    assert graph["engram_numba.export.json"] == {"engram_numba.metrics.snapshot"}
    found = violations(graph)
    assert ("upward", "_low", "metrics.spec") in found
    assert ("upward", "metrics.spec", "export.json") in found
    assert ("upward", "metrics.snapshot", "viz") in found
    # spec -> export.json -> snapshot -> spec is a cycle; _low -> spec and viz are not on it
    assert {v for v in found if v[0] == "cycle"} == {
        ("cycle", "metrics.spec", "export.json"), ("cycle", "export.json", "metrics.snapshot"),
        ("cycle", "metrics.snapshot", "metrics.spec")}
    assert ("upward", "export.json", "metrics.snapshot") not in found
    assert graph["engram_numba.viz"] == {"engram_numba.export"}


def test_a_module_outside_every_layer_is_named(tmp_path):
    root = _tree(tmp_path, {"__init__.py": "", "plots.py": ""})
    with pytest.raises(AssertionError, match="engram_numba.plots is in no layer"):
        for name in import_graph(root):
            layer(name)
