"""The device package sits above metrics and tracing: nothing below it imports it.

``MySet.cuda()`` reaches :mod:`engram_numba.gpu` through the device registry of
:mod:`engram_numba._kernel_arg`, which the gpu package fills when imported (the
package facade names the module), so core, metrics, tracing and export never
import gpu.
"""

import ast
import pathlib

import engram_numba

ROOT = pathlib.Path(engram_numba.__file__).parent
BELOW_GPU = [p for p in ROOT.rglob("*.py")
             if p.parent == ROOT and p.name.startswith("_") and p.name != "__init__.py"
             or p.parent.name in ("metrics", "tracing", "export")]


def _imported(path: pathlib.Path, source: str | None = None):
    """The absolute names of the modules ``path`` imports (relative imports resolved)."""
    package = ["engram_numba", *path.relative_to(ROOT).parent.parts]
    tree = ast.parse(path.read_text() if source is None else source)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package[:len(package) - node.level + 1] if node.level else []
            module = ".".join(base + ([node.module] if node.module else []))
            yield module
            yield from (f"{module}.{a.name}" for a in node.names)


def _upward(path, source=None) -> list:
    return [name for name in _imported(path, source)
            if name == "engram_numba.gpu" or name.startswith("engram_numba.gpu.")]


def test_nothing_below_gpu_imports_it():
    assert len(BELOW_GPU) > 20, BELOW_GPU           # the walk found the modules
    upward = sorted(f"{p.relative_to(ROOT)}: {name}" for p in BELOW_GPU for name in _upward(p))
    assert upward == []


def test_the_check_sees_an_import_of_gpu_in_a_function():
    path = ROOT / "metrics" / "metric_set.py"
    assert _upward(path, "def cuda(cls):\n    from ..gpu import device_metric_set\n")
    assert _upward(path, "import engram_numba.gpu._target\n")
    assert not _upward(path, "from .. import _kernel_arg\n")


def test_an_unregistered_device_kind_says_what_to_import():
    import pytest
    from engram_numba import _kernel_arg
    with pytest.raises(RuntimeError, match="no tpu device support registered"):
        _kernel_arg.device("tpu")
    assert _kernel_arg._device_modules["cuda"] == "engram_numba.gpu"   # the facade's say
