"""Recording allocates nothing: NRT allocation counts do not grow with the number of records."""

import numpy as np
from numba import njit
from numba.core.runtime import _nrt_python, rtsys

from .test_metric_set import Color, Shop


@njit
def record(m, reps):
    for i in range(reps):
        m.sale(Color.RED, 1.5)
        m.by_shape.inc(i % 3, i % 2)
        m.visits.add(i)
        m.stock.add(0.5, 0)
        m.wait.observe(0.7)
        m.delta.observe(-2.0)
        m.sold.inc(i % 5)   # includes out-of-range labels


@njit
def driver(m, reps):
    # called from a jitted driver: the Python boundary's own allocations stay out
    record(m, reps)


def _allocations(m, reps):
    before = rtsys.get_allocation_stats()
    driver(m, reps)
    after = rtsys.get_allocation_stats()
    return after.alloc - before.alloc, after.mi_alloc - before.mi_alloc


def test_recording_does_not_allocate():
    _nrt_python.memsys_enable_stats()
    m = Shop()
    driver(m, 1)  # compile
    one = _allocations(m, 1)
    many = _allocations(m, 1000)
    assert one == many
    assert m.visits.value() == sum(range(1000))


def test_control_an_allocating_kernel_is_detected():
    """The measurement sees allocations when there are some."""
    _nrt_python.memsys_enable_stats()

    @njit
    def allocating(reps):
        total = 0.0
        for i in range(reps):
            total += np.ones(3).sum()
        return total

    @njit
    def drive(reps):
        return allocating(reps)

    drive(1)
    a = rtsys.get_allocation_stats().alloc
    drive(1)
    b = rtsys.get_allocation_stats().alloc
    drive(1000)
    c = rtsys.get_allocation_stats().alloc
    assert (c - b) > (b - a)
