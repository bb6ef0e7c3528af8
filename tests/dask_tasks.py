"""A metric set and a numba task for the Dask tests (importable on the workers)."""

import numpy as np
from numba import njit

from engram_numba import Counter, Histogram, MetricSet


class TaskMetrics(MetricSet, name="dask_tasks"):
    items = Counter("dask_task_items", "Items processed by the kernel")
    sizes = Histogram("dask_task_item_size", "Item sizes", range=(1e-3, 1e3))


@njit(nogil=True)
def kernel(m, values):
    total = 0.0
    for v in values:
        m.items.inc()
        m.sizes.observe(v)
        total += v
    return total


def task(n):
    from engram_numba.dask import worker_metrics
    return kernel(worker_metrics(TaskMetrics), np.linspace(0.5, 2.0, n))
