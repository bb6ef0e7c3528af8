"""numba's on-disk cache with metric sets: it hits, and stale entries never crash."""

import subprocess
import sys

SETMOD = '''
from engram_numba import MetricSet, Counter, Histogram

class {name}(MetricSet):
    hits = Counter("hits_total")
    sizes = Histogram("sizes", scale=2)
'''

KMOD = '''
import sys
from numba import njit
from setmod import {name} as Metrics

@njit(cache=True)
def kernel(m, n):
    for i in range(n):
        m.hits.inc()
        m.sizes.observe(1.5)
    return n

m = Metrics()
kernel(m, 10)
sig = kernel.signatures[0]
print(m.hits.value(), kernel.stats.cache_hits.get(sig, 0), kernel.stats.cache_misses.get(sig, 0))
'''


def _write(path, text):
    """Write only a changed file: numba before 0.61 stamps a source by its mtime, not its bytes."""
    if not path.exists() or path.read_text() != text:
        path.write_text(text)


def _run(tmp_path, name):
    _write(tmp_path / "setmod.py", SETMOD.format(name=name))
    _write(tmp_path / "kmod.py", KMOD.format(name=name))
    r = subprocess.run([sys.executable, "kmod.py"], cwd=tmp_path, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr
    return [int(x) for x in r.stdout.split()]


def test_cached_kernel_is_reused_and_survives_a_renamed_class(tmp_path):
    assert _run(tmp_path, "Metrics") == [10, 0, 1]      # compiled and saved
    assert _run(tmp_path, "Metrics") == [10, 1, 0]      # loaded from the cache
    # the index now references setmod.Metrics, which no longer exists
    assert _run(tmp_path, "Renamed")[0] == 10
    assert _run(tmp_path, "Renamed") == [10, 1, 0]


def _package_dispatchers():
    import importlib
    import pkgutil

    import engram_numba
    from numba.core.dispatcher import Dispatcher
    for info in pkgutil.walk_packages(engram_numba.__path__, "engram_numba."):
        if info.name.endswith("__main__"):
            continue
        try:
            module = importlib.import_module(info.name)
        except ImportError:     # an extra that is not installed
            continue
        for value in vars(module).values():
            if isinstance(value, Dispatcher) and value._cache.__class__.__name__ != "NullCache" \
                    and value.__module__ == module.__name__:
                yield value


def test_every_cached_function_of_the_package_is_keyed_on_the_package_source():
    from engram_numba._cache import FINGERPRINT, guarded
    found = list(_package_dispatchers())
    assert len(found) >= 10
    unguarded = [f.py_func.__qualname__ for f in found if not guarded(f)]
    assert not unguarded
    assert all(FINGERPRINT in f._cache._impl._locator.get_source_stamp() for f in found)


STALE = '''
import sys
sys.path.insert(0, sys.argv[1])
import numpy as np
from engram_numba.metrics import _njit
words = np.zeros(4, np.uint64)
_njit.py_counter_add(words.ctypes.data, 1, True)
sig = _njit.py_counter_add.signatures[0]
print(_njit.py_counter_add.stats.cache_hits.get(sig, 0), _njit.py_counter_add.stats.cache_misses.get(sig, 0))
'''


def test_a_change_in_another_module_of_the_package_invalidates_cached_code(tmp_path):
    """A cached function inlines constants of other modules: any source change must recompile."""
    import shutil
    from pathlib import Path

    import engram_numba
    src = Path(engram_numba.__file__).parent
    shutil.copytree(src, tmp_path / "engram_numba",
                    ignore=shutil.ignore_patterns("__pycache__", "*.nbi", "*.nbc"))
    (tmp_path / "run.py").write_text(STALE)

    def run():
        r = subprocess.run([sys.executable, str(tmp_path / "run.py"), str(tmp_path)],
                           capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stderr
        return [int(x) for x in r.stdout.split()]

    assert run() == [0, 1]
    assert run() == [1, 0]
    record = tmp_path / "engram_numba" / "metrics" / "_record.py"   # not the cached function's file
    record.write_text(record.read_text() + "\n# changed\n")
    assert run() == [0, 1]


WARM_SET = '''
import enum
import numpy as np
from engram_numba import Counter, Event, EventSet, Gauge, Histogram, MetricSet, Span


class Route(enum.IntEnum):
    GET = 0
    PUT = 1


class Shop(MetricSet):
    requests = Counter("requests_total", labels={"route": Route})
    inflight = Gauge("inflight")
    latency = Histogram("latency", range=(1e-6, 10.0))


class Steps(EventSet, name="steps"):
    step = Event("A step", value=np.float64, k=np.uint32)
    work = Span("Work", n=np.uint32)
'''

WARM_RUN = '''
import sys
sys.path.insert(0, sys.argv[1])
from numba.core import event

compiled = []


class Compiles(event.Listener):
    def on_start(self, ev):
        fn = getattr((ev.data or {}).get("dispatcher"), "py_func", None)
        module = getattr(fn, "__module__", None) or ""
        # the public atomics' Python-side fallbacks (used by Python calls, not kernels)
        # compile once per process
        if module.startswith("engram_numba") and module != "engram_numba._atomics":
            compiled.append(fn.__qualname__)

    def on_end(self, ev):
        pass


event.register("numba:compile", Compiles())

import numpy as np
from numba import njit
from engram_numba import Tracer, TracingConfig
from warmset import Route, Shop, Steps


@njit
def kernel(m, tr, xs):
    tr.work.begin(xs.size)
    for i in range(xs.size):
        m.requests.inc(Route.GET)
        m.requests.labels(Route.PUT).inc()
        m.inflight.set(xs[i])
        m.latency.observe(xs[i])
        tr.step.emit(xs[i], i)
    tr.work.end()


xs = np.linspace(0.5, 1.0, 5)
m, tr = Shop(), Tracer(Steps, TracingConfig(ring_buffer_size=64))
kernel(m, tr, xs)
twin = njit(kernel.py_func)                     # the disabled twin
twin(Shop.disabled(), Tracer.disabled(Steps), xs)
events = tr.drain()
print(len(compiled), m.requests.value(Route.GET), m.requests.value(Route.PUT),
      m.latency.read().count, int((events["event_type"] == Steps.step.index).sum()))
'''


def test_a_second_process_compiles_no_function_of_the_package(tmp_path):
    """The library's compiled recording code (its njit helpers and the bodies generated per
    metric and event shape) comes from numba's on-disk cache in a second process; a
    change of the package's source compiles it afresh (the cache guard)."""
    import os
    import shutil
    from pathlib import Path

    import engram_numba
    src = Path(engram_numba.__file__).parent
    shutil.copytree(src, tmp_path / "pkg" / "engram_numba",
                    ignore=shutil.ignore_patterns("__pycache__", "*.nbi", "*.nbc"))
    (tmp_path / "warmset.py").write_text(WARM_SET)
    (tmp_path / "run.py").write_text(WARM_RUN)
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / "cache"))

    def run():
        r = subprocess.run([sys.executable, str(tmp_path / "run.py"), str(tmp_path / "pkg")],
                           cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
        assert r.returncode == 0, r.stderr
        return [int(x) for x in r.stdout.split()]

    first = run()
    assert first[0] > 10 and first[1:] == [5, 5, 5, 5]
    assert run() == [0, 5, 5, 5, 5]             # everything of the package from the cache
    record = tmp_path / "pkg" / "engram_numba" / "metrics" / "_record.py"
    record.write_text(record.read_text() + "\n# changed\n")
    again = run()
    assert again[0] > 10 and again[1:] == [5, 5, 5, 5]
