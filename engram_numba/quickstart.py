"""A short threaded demo: a Monte-Carlo kernel recording metrics from two threads.

Run with ``engram-numba demo``.  Each thread runs the same ``nogil`` kernel on
its own random stream; both record into one metric set, lock-free, and the
totals come out exact.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from numba import njit

from .export.prometheus import exposition
from .metrics import Counter, Gauge, Histogram, MetricSet


class DemoMetrics(MetricSet, name="demo"):
    points = Counter("demo_points_total", "Random points drawn in the unit square",
                     labels={"region": ["inside", "outside"]})
    distance = Histogram("demo_distance", "Distance of a point from the origin",
                         scale=2, range=(1 / 16, 2))
    running = Gauge("demo_threads_running", "Threads inside the kernel")


@njit(nogil=True, cache=True)
def estimate_pi(metrics, n, seed):
    """Draw ``n`` points; count those inside the quarter circle."""
    np.random.seed(seed)
    metrics.running.add(1)
    inside = 0
    for _ in range(n):
        x = np.random.random()
        y = np.random.random()
        d = np.sqrt(x * x + y * y)
        metrics.distance.observe(d)
        if d <= 1.0:
            metrics.points.inc(0)
            inside += 1
        else:
            metrics.points.inc(1)
    metrics.running.sub(1)
    return inside


def run(threads: int = 2, points: int = 2_000_000, out=print) -> DemoMetrics:
    metrics = DemoMetrics()
    estimate_pi(metrics, 1, 0)  # compile (or load from cache) before timing
    metrics.reset()
    start = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        inside = sum(pool.map(lambda s: estimate_pi(metrics, points, s), range(threads)))
    elapsed = time.perf_counter() - start
    total = metrics.points.total
    out(exposition(metrics), end="")
    out(f"# {threads} threads x {points:,} points in {elapsed:.3f} s; "
        f"recorded {total:,} points (expected {threads * points:,}, "
        f"{'exact' if total == threads * points else 'MISMATCH'}); "
        f"pi ~ {4 * inside / (threads * points):.5f}")
    return metrics
