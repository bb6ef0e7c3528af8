"""Metric sets under threads: exact totals from nogil threads and prange workers."""

import numpy as np
from numba import njit, prange

from engram_numba import Counter, Gauge, Histogram, MetricSet, atomic_add

from .conftest import needs_two_cpus, run_threads, spin_barrier

N = 1_000_000
# exactly representable values: every partial sum is exact in float64
VALUES = np.array([0.5, 0.25, 1.0, 2.0, 0.125, 4.0, 0.75, 1.5])


class Hot(MetricSet):
    hits = Counter("hits")
    level = Gauge("level")
    sizes = Histogram("sizes", scale=2, range=(0.1, 10))


@njit(nogil=True)
def hammer(m, n, values, flag, parties):
    spin_barrier(flag, parties)
    for i in range(n):
        m.hits.inc()
        m.level.add(1.0)
        m.sizes.observe(values[i % values.size])


def _check_exact(m, total):
    assert m.hits.value() == total
    assert m.level.value() == float(total)
    h = m.sizes.read()
    per_value = total // VALUES.size
    assert h.count == total
    assert h.sum == per_value * VALUES.sum()
    assert h.min == VALUES.min() and h.max == VALUES.max()
    assert sorted(n for _, _, n in h.buckets() if n) == [per_value] * VALUES.size


@needs_two_cpus
def test_two_nogil_threads_give_exact_totals(barrier):
    m = Hot()
    run_threads(hammer, [(m, N, VALUES, barrier, 2)] * 2)
    _check_exact(m, 2 * N)


@njit(parallel=True)
def hammer_prange(m, n, values):
    for i in prange(n):
        m.hits.inc()
        m.level.add(1.0)
        m.sizes.observe(values[i % values.size])


@needs_two_cpus
def test_prange_workers_give_exact_totals():
    m = Hot()
    hammer_prange(m, 2 * N, VALUES)
    _check_exact(m, 2 * N)


@needs_two_cpus
def test_python_and_kernel_threads_record_into_the_same_set(barrier):
    """A Python thread's calls are atomic too: they do not race with kernels."""
    m = Hot()
    barrier[:] = 1
    hammer(m, 1, VALUES, barrier, 1)
    m.reset()
    barrier[:] = 0

    def python_side(n):
        atomic_add(barrier, 0, 1)  # join the kernel thread's spin barrier
        for i in range(n):
            m.hits.inc()

    run_threads(lambda which: hammer(m, N, VALUES, barrier, 2) if which else python_side(20_000),
                [(1,), (0,)])
    assert m.hits.value() == N + 20_000
    assert m.level.value() == float(N)


def test_gauge_set_from_threads_keeps_one_of_the_written_values(barrier):
    @njit(nogil=True)
    def setter(m, value, n, flag):
        spin_barrier(flag, 2)
        for _ in range(n):
            m.level.set(value)

    m = Hot()
    run_threads(setter, [(m, 1.25, 200_000, barrier), (m, -7.5, 200_000, barrier)])
    assert m.level.value() in (1.25, -7.5)
