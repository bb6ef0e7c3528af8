"""Public atomics: semantics per dtype and target, typing errors, threads, prange."""

import numpy as np
import pytest
from numba import njit, prange
from numba.core.errors import TypingError

from engram_numba import (atomic_add, atomic_cas, atomic_exchange, atomic_fence, atomic_load,
                          atomic_max, atomic_min, atomic_store, atomic_sub)

from .conftest import needs_two_cpus, run_threads, spin_barrier

INT_TYPES = [np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16, np.uint32, np.uint64]
FLOAT_TYPES = [np.float32, np.float64]


@njit
def _all_ops(a):
    r = np.zeros(7, dtype=a.dtype)
    r[0] = atomic_add(a, 0, 5)
    r[1] = atomic_sub(a, 1, 2)
    r[2] = atomic_max(a, 2, 9)
    r[3] = atomic_min(a, 3, 1)
    r[4] = atomic_exchange(a, 4, 7)
    r[5] = atomic_cas(a, 5, 3, 8)      # matches: swaps
    r[6] = atomic_cas(a, 6, 0, 8)      # does not match
    atomic_store(a, 7, 6)
    return r


@pytest.mark.parametrize("dtype", INT_TYPES + FLOAT_TYPES)
def test_each_operation_returns_previous_value_and_updates(dtype):
    a = np.full(8, 3, dtype=dtype)
    prev = _all_ops(a)
    assert prev.tolist() == [3, 3, 3, 3, 3, 3, 3]
    assert a.tolist() == [8, 1, 9, 1, 7, 8, 3, 6]


@njit
def _loads(a):
    return atomic_load(a, 0), atomic_load(a, 0, "relaxed"), atomic_load(a, -1, "acquire")


def test_load_orders_and_negative_index_wraps():
    a = np.array([4.5, 0.0, 2.5])
    assert _loads(a) == (4.5, 4.5, 2.5)


@njit
def _store_orders(a):
    atomic_store(a, 0, 1)
    atomic_store(a, 1, 2, "relaxed")
    atomic_store(a, 2, 3, "release")
    atomic_fence()
    atomic_fence("acquire")
    atomic_fence("release")
    atomic_fence("acq_rel")


def test_store_orders_and_fences():
    a = np.zeros(3, dtype=np.int32)
    _store_orders(a)
    assert a.tolist() == [1, 2, 3]


@njit
def _nd(a):
    atomic_add(a, (1, 2), 5)
    return atomic_load(a, (1, 2))


def test_nd_index():
    a = np.zeros((2, 3), dtype=np.uint32)
    assert _nd(a) == 5
    assert a[1, 2] == 5 and a.sum() == 5


@njit
def _float_extremes(a):
    atomic_max(a, 0, np.nan)      # maxNum: NaN operand ignored
    atomic_min(a, 1, -np.inf)
    atomic_add(a, 2, 0.25)


def test_float_max_ignores_nan_and_float_add_is_a_real_float_add():
    a = np.array([1.0, 0.0, 0.5])
    _float_extremes(a)
    assert a.tolist() == [1.0, -np.inf, 0.75]


RECORD = np.dtype([("flag", np.int8), ("count", np.uint64), ("total", np.float64)], align=True)


@njit
def _record_ops(r):
    atomic_add(r[1], "count", 3)
    atomic_add(r[1], "total", 1.5)
    return atomic_cas(r[1], "count", 3, 10), atomic_load(r[1], "total")


def test_record_fields_are_updated_in_place():
    r = np.zeros(3, RECORD)
    assert _record_ops(r) == (3, 1.5)
    assert r[1]["count"] == 10 and r[1]["total"] == 1.5
    assert r[0]["count"] == 0 and r[2]["count"] == 0


def test_python_calls_work_on_arrays():
    a = np.zeros(3, dtype=np.int64)
    assert atomic_add(a, 1, 4) == 0
    assert atomic_cas(a, 1, 4, 9) == 4
    assert atomic_load(a, 1) == 9
    atomic_store(a, 0, 2, "relaxed")
    atomic_fence()
    assert a.tolist() == [2, 9, 0]
    with pytest.raises(ValueError, match="order"):
        atomic_load(a, 0, "seq_cst")


@pytest.mark.parametrize("body, message", [
    ("atomic_add(np.zeros(3, np.bool_), 0, 1)", "not an integer or float"),
    ("atomic_add(np.zeros(3, np.int64), 0, 1.5)", "cannot store a float"),
    ("atomic_add(np.zeros((2, 2)), 0, 1.0)", "tuple of 2 integers"),
    ("atomic_add(np.zeros(3), (0, 1), 1.0)", "needs an integer"),
    ("atomic_add(np.zeros(3), 0.5, 1.0)", "needs an integer"),
    ("atomic_load(np.zeros(3), 0, 'seq_cst')", "order must be one of"),
    ("atomic_store(np.zeros(3), 0, 1.0, 'acquire')", "order must be one of"),
    ("atomic_add(5, 0, 1)", "unsupported target"),
])
def test_wrong_arguments_give_a_typing_error_that_says_what_is_accepted(body, message):
    ns = {"np": np, "njit": njit, "atomic_add": atomic_add, "atomic_load": atomic_load,
          "atomic_store": atomic_store}
    exec(f"@njit\ndef f():\n    return {body}\n", ns)
    with pytest.raises(TypingError, match=message):
        ns["f"]()


def test_unknown_record_field_and_read_only_array_are_typing_errors():
    @njit
    def bad_field(r):
        return atomic_add(r[0], "nope", 1)

    with pytest.raises(TypingError, match="no field 'nope'"):
        bad_field(np.zeros(1, RECORD))

    @njit
    def add(a):
        return atomic_add(a, 0, 1)

    ro = np.zeros(2, np.int64)
    ro.setflags(write=False)
    with pytest.raises(TypingError, match="read-only"):
        add(ro)


UNALIGNED = np.dtype([("flag", np.int8), ("count", np.uint64)], align=False)


def test_unaligned_record_field_is_refused():
    @njit
    def add(r):
        return atomic_add(r[0], "count", 1)

    with pytest.raises(TypingError, match="align=True"):
        add(np.zeros(1, UNALIGNED))


# -- threads -------------------------------------------------------------------

N = 2_000_000


@njit(nogil=True)
def _atomic_int_increments(a, n, flag, parties):
    spin_barrier(flag, parties)
    for _ in range(n):
        atomic_add(a, 0, 1)


@njit(nogil=True)
def _atomic_float_increments(a, n, flag, parties):
    spin_barrier(flag, parties)
    for _ in range(n):
        atomic_add(a, 0, 0.5)


@njit(nogil=True)
def _racy_increments(a, n, flag, parties):
    # load and store as separate instructions (the extra load keeps LLVM from
    # fusing them into one `inc mem`): the read-modify-write race of a[0] += 1
    spin_barrier(flag, parties)
    for _ in range(n):
        v = atomic_load(a, 0, "relaxed")
        atomic_store(a, 0, v + 1 + atomic_load(a, 1, "relaxed"), "relaxed")


def lost_updates_with_two_threads(kernel, a, n, barrier, guard_s=300.0):
    """Fraction of 2 * n increments lost; retried while the OS kept the threads apart
    (on loaded cores that can take many runs; ``guard_s`` only bounds a broken case)."""
    import time
    deadline = time.monotonic() + guard_s
    while True:
        a[:] = 0
        barrier[:] = 0
        run_threads(kernel, [(a, n, barrier, 2), (a, n, barrier, 2)])
        lost = 1.0 - a[0] / (2 * n)
        if lost > 0 or time.monotonic() > deadline:
            return lost


@needs_two_cpus
def test_atomic_add_from_nogil_threads_is_exact(barrier):
    ints = np.zeros(1, dtype=np.int64)
    run_threads(_atomic_int_increments, [(ints, N, barrier, 2), (ints, N, barrier, 2)])
    assert ints[0] == 2 * N
    floats = np.zeros(1, dtype=np.float64)
    barrier[:] = 0
    run_threads(_atomic_float_increments, [(floats, N, barrier, 2), (floats, N, barrier, 2)])
    assert floats[0] == 0.5 * 2 * N


@needs_two_cpus
def test_control_non_atomic_update_loses_counts(barrier):
    """Proves the thread tests can fail: the same race without atomics loses updates."""
    a = np.zeros(2, dtype=np.int64)
    lost = lost_updates_with_two_threads(_racy_increments, a, 5 * N, barrier)
    assert lost > 0, "two racing threads never lost an update: the thread tests prove nothing"


@njit(parallel=True)
def _prange_atomic(a, n):
    for i in prange(n):
        atomic_add(a, i % 2, 1)
        atomic_max(a, 2, i)


@njit(parallel=True)
def _prange_racy(a, n):
    for i in prange(n):
        v = atomic_load(a, 0, "relaxed")
        atomic_store(a, 0, v + 1 + atomic_load(a, 1, "relaxed"), "relaxed")


@needs_two_cpus
def test_prange_atomics_are_exact_and_the_racy_control_is_not():
    a = np.zeros(3, dtype=np.int64)
    _prange_atomic(a, N)
    assert a.tolist() == [N // 2, N // 2, N - 1]
    # the workers race only while both run at once: on loaded cores, run the control
    # again until they have (the deadline is a guard, not a measurement)
    import time
    r = np.zeros(2, dtype=np.int64)
    deadline = time.monotonic() + 300
    while True:
        r[:] = 0
        _prange_racy(r, 5 * N)
        if r[0] < 5 * N:
            break
        assert time.monotonic() < deadline, \
            "prange workers never lost an update: the prange test proves nothing"
