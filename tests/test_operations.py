"""Every record operation of the operations table, from a kernel and from Python.

Each row of :data:`engram_numba.metrics.operations.OPERATIONS` is recorded on a
labelled metric three ways (a kernel call with the label, a kernel call through
``labels(...)``, a Python call) and read back against the row's reference
effect; the other label combination stays untouched.
"""

from __future__ import annotations

import pytest
from numba import njit

from engram_numba import MetricSet
from engram_numba.metrics.operations import OPERATIONS


def _kernels(op):
    """``(direct, child)``: kernels recording ``op`` once on label 1 (its example value)."""
    value = "x, " if op.param else ""
    child = "x" if op.param else ""
    ns = {}
    exec(f"def direct(m, x):\n    return m.metric.{op.method}({value}1)\n"
         f"def child(m, x):\n    return m.metric.labels(1).{op.method}({child})\n", ns)
    return njit(ns["direct"]), njit(ns["child"])


@pytest.mark.parametrize("op", OPERATIONS, ids=lambda op: op.name)
def test_each_operation_from_a_kernel_and_from_python(op):
    class S(MetricSet):
        metric = op.declare(f"ops_{op.kind.name}_{op.method}", "an operation",
                            labels={"side": ["a", "b"]})

    m = S()
    untouched = op.read(m.metric, "a")
    direct, child = _kernels(op)
    x = op.example if op.param else 0
    expected = op.read(m.metric, "b")
    for record in (lambda: direct(m, x), lambda: child(m, x),
                   lambda: getattr(m.metric, op.method)(*op.args(), "b")):
        assert record() is True
        expected = op.effect(expected, op.example)
        assert op.read(m.metric, "b") == expected
    assert op.read(m.metric, "a") == untouched
    assert m.invalid_records == 0
    # a disabled set records nothing and says so
    assert direct(S.disabled(), x) is False


def test_the_table_covers_every_kernel_record_method():
    from engram_numba.metrics._njit import _HANDLE_TYPES
    declared = {(kind.name, name) for kind, h in _HANDLE_TYPES.items() for name in h.methods}
    assert {(op.kind.name, op.method) for op in OPERATIONS} == declared
