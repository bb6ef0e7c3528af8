"""The release differences of _compat: each workaround is exercised on every release CI runs,
not only on the release that needs it."""

import numpy as np
import pytest
from llvmlite import binding as llvm
from numba import njit

from engram_numba import _compat, atomic_max, atomic_min


def test_the_attribute_probe_matches_the_llvmlite_release():
    import llvmlite
    major, minor = (int(x) for x in llvmlite.__version__.split(".")[:2])
    assert _compat.function_attributes_work() == ((major, minor) >= (0, 48))


def test_float_max_and_min_by_compare_and_swap_agree_with_llvm(monkeypatch):
    """The compare-and-swap loop that stands in for ``atomicrmw fmax/fmin`` on LLVM 14,
    compiled here whatever LLVM runs, against numpy's fmax/fmin (NaN ignored)."""
    monkeypatch.setattr(_compat, "_llvm_major", lambda: 14)

    @njit
    def apply(a, values):
        before = np.empty((values.size, 2))
        for i in range(values.size):
            before[i, 0] = atomic_max(a, 0, values[i])
            before[i, 1] = atomic_min(a, 1, values[i])
        return before

    values = np.array([0.5, -2.0, np.nan, 7.25, 7.0, -np.inf, np.inf, 1e-300])
    for dtype in (np.float64, np.float32):
        a = np.array([1.0, 1.0], dtype=dtype)
        before = apply(a, values.astype(dtype))
        lo, hi = np.asarray(1.0, dtype), np.asarray(1.0, dtype)
        for i, v in enumerate(values.astype(dtype)):
            assert before[i, 0] == hi and before[i, 1] == lo
            hi, lo = np.fmax(hi, v), np.fmin(lo, v)
        assert a[0] == hi and a[1] == lo
    ir_text = apply.inspect_llvm(apply.signatures[0])
    assert "cmpxchg" in ir_text and "atomicrmw fmax" not in ir_text


def test_a_cold_path_stays_a_call_and_the_hot_loop_holds_no_stack_store():
    from engram_numba import Counter, MetricSet
    from engram_numba._asm import loops, native_lines

    class Cold(MetricSet, name="cold_path"):
        c = Counter("cold_total")

    @njit
    def k(m, n):
        for _ in range(n):
            m.c.inc()

    m = Cold()
    k(m, 100)
    assert m.c.value() == 100
    lines = native_lines(k)
    assert any("call" in line for line in lines), "the shared copy's update was inlined"
    for first, last in loops(lines):
        body = lines[first:last + 1]
        if any("call" in line for line in body):
            continue                           # the shared copy's loop
        assert not [line for line in body if "(%rsp)" in line], body


def test_a_record_method_is_built_once_for_typing_and_lowering():
    """numba types a method call with the call site's arguments and lowers it with the
    defaults of the omitted parameters appended; the lowering must find the function that
    the typing built instead of building (compiling, or loading from disk) a second one."""
    import enum
    import gc

    from numba.core.dispatcher import Dispatcher

    from engram_numba import Counter, Event, EventSet, Gauge, MetricSet, Span, Tracer

    class Side(enum.IntEnum):
        LEFT = 0
        RIGHT = 1

    class Once(MetricSet, name="built_once"):
        hits = Counter("built_once_hits_total", labels={"side": Side})
        level = Gauge("built_once_level")

    class OnceEvents(EventSet, name="built_once"):
        step = Event("A step", k=np.uint32)
        work = Span("Work")

    @njit
    def k(m, tr):
        tr.work.begin()
        m.hits.inc(Side.LEFT)
        m.level.set(2.0)
        tr.step.emit(3)
        tr.work.end()

    def generated() -> list:
        return [obj for obj in gc.get_objects() if issubclass(type(obj), Dispatcher)
                and getattr(obj.py_func, "_engram_numba_source", None) is not None]

    before = {id(d) for d in generated()}
    m, tr = Once(), Tracer(OnceEvents)
    k(m, tr)
    assert m.hits.value(Side.LEFT) == 1 and len(tr.drain()) == 3
    built: dict = {}
    for d in generated():
        if id(d) not in before:
            source = d.py_func._engram_numba_source
            built[source] = built.get(source, 0) + 1
    assert len(built) >= 4, built            # inc, set, emit, begin (and end's)
    assert all(n == 1 for n in built.values()), built
