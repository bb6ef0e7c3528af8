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
