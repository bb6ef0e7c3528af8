"""Type checkers see the package as its users install it: the wheel ships py.typed, and
mypy accepts a set declared with class keywords and checks calls against the package."""

import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

GOOD = """
import numpy as np
from engram_numba import Counter, Event, EventSet, MetricSet, Span, Tracer, TracingConfig


class Shop(MetricSet, name="shop", shards=4):
    orders = Counter("shop_orders_total", "Orders", labels={"kind": ["new", "repeat"]})


class Work(EventSet, name="work", production_rates={"step": 0.5}):
    step = Event("A step", k=np.uint32)
    job = Span("A job")


m = Shop()
m.orders.labels("new").inc(5)
events = Tracer(Work, TracingConfig(ring_buffer_size=1024)).drain()
name: str = Shop.set_name
"""

BAD = """
from engram_numba import MetricSet

class Shop(MetricSet, name="shop"):
    pass

shards: str = Shop.shards          # an int: the one error mypy must find
"""


def test_the_wheel_ships_py_typed_and_mypy_reads_the_package(tmp_path):
    pytest.importorskip("mypy")
    wheels = tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(wheels),
                    str(ROOT)], check=True, capture_output=True, timeout=600)
    (wheel,) = wheels.glob("engram_numba-*.whl")
    assert "engram_numba/py.typed" in zipfile.ZipFile(wheel).namelist()
    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target",
                    str(site), str(wheel)], check=True, capture_output=True, timeout=600)
    (tmp_path / "good.py").write_text(textwrap.dedent(GOOD))
    (tmp_path / "bad.py").write_text(textwrap.dedent(BAD))
    # as installed: PEP 561 (the directory is on the path like site-packages; without
    # py.typed mypy would not read the package, and the class keywords would be errors)
    env = {"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin"}
    r = subprocess.run([sys.executable, "-m", "mypy", "--ignore-missing-imports",
                        "--no-incremental", "good.py", "bad.py"], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=600)
    errors = [line for line in r.stdout.splitlines() if ": error:" in line]
    assert len(errors) == 1, r.stdout
    assert errors[0].startswith("bad.py:7:") and "Incompatible types" in errors[0]


def test_public_docstrings_answer_instead_of_pointing_elsewhere():
    import inspect

    import engram_numba
    seen, vague = set(), []
    for name in engram_numba.__all__:
        obj = getattr(engram_numba, name)
        members = [obj] + ([m for _, m in inspect.getmembers(obj)
                            if inspect.isfunction(m) or inspect.ismethod(m)
                            or isinstance(m, property)] if inspect.isclass(obj) else [])
        for m in members:
            doc = inspect.getdoc(m) or ""
            if id(m) in seen or not doc:
                continue
            seen.add(id(m))
            low = doc.lower()
            if "see above" in low or "see the module docstring" in low or \
                    "see module docstring" in low:
                vague.append(getattr(m, "__qualname__", name))
    assert not vague, vague
