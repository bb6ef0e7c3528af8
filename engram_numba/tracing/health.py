"""What the trace collector measures about tracing itself.

* :class:`TopKeys` - the most frequent keys of a stream (node pairs, episodes)
  with the Space-Saving algorithm: ``capacity`` counters, every key whose true
  count exceeds ``total / capacity`` is kept, and a reported count overestimates
  the true one by at most that much.  Memory stays bounded however many distinct
  keys the workload produces.
* :class:`OverheadEstimate` - ``engram_metrics_overhead_percent``: the records
  made during an interval (trace events written + metric records) times their
  calibrated cost, divided by the time of the threads that recorded::

      overhead % = 100 * (events * c_event + records * c_record)
                       / (interval * recording threads)

  ``c_event`` and ``c_record`` are measured once per process by timing
  ``trace_priming`` and ``record_priming`` in a compiled loop.  It is an
  estimate: it assumes each recording thread was busy for the whole interval
  and that records cost what they cost in isolation (inside real work they
  often cost less, see the benchmarks).
"""

from __future__ import annotations

import time

import numpy as np
from numba import njit

__all__ = ["TopKeys", "OverheadEstimate"]


class TopKeys:
    """Space-Saving heavy hitters over u64 key tuples."""

    def __init__(self, capacity: int = 1024):
        if capacity < 1:
            raise ValueError("capacity must be positive")
        self.capacity = capacity
        self.counts: dict = {}
        self.total = 0

    def update(self, keys: np.ndarray) -> None:
        """Add one occurrence per row of ``keys`` (shape (n,) or (n, parts), u64)."""
        keys = np.asarray(keys, dtype=np.uint64)
        if keys.size == 0:
            return
        if keys.ndim == 1:
            keys = keys[:, None]
        uniq, counts = np.unique(keys, axis=0, return_counts=True)
        self.total += int(counts.sum())
        table = self.counts
        for row, n in zip(map(tuple, uniq.tolist()), counts.tolist()):
            if row in table:
                table[row] += n
            elif len(table) < self.capacity:
                table[row] = n
            else:
                victim = min(table, key=table.__getitem__)
                table[row] = table.pop(victim) + n

    def top(self, k: int) -> list:
        """``[(key tuple, count)]`` of the ``k`` largest counts, largest first."""
        return sorted(self.counts.items(), key=lambda kv: (-kv[1], kv[0]))[:k]

    @property
    def error_bound(self) -> float:
        return self.total / self.capacity


@njit(nogil=True, cache=True)
def _time_events(tracer, n):
    for i in range(n):
        tracer.trace_priming(i % 3, 0.5, i, i)


@njit(nogil=True, cache=True)
def _time_records(metrics, n):
    for i in range(n):
        metrics.record_priming(i % 3, 0.5)


_costs = None


def record_costs() -> tuple:
    """(ns per traced event, ns per metric record), measured once per process."""
    global _costs
    if _costs is None:
        from ..metrics.cognitive import CognitivePatternMetrics
        from .config import TracingConfig
        from .tracer import CognitiveTracer
        n = 200_000
        with CognitiveTracer(TracingConfig(ring_buffer_size=1 << 12, max_threads=2)) as tr:
            _time_events(tr, 10)
            t = time.perf_counter_ns()
            _time_events(tr, n)
            c_event = (time.perf_counter_ns() - t) / n
        m = CognitivePatternMetrics()
        _time_records(m, 10)
        t = time.perf_counter_ns()
        _time_records(m, n)
        # record_priming is 3 locked operations; a typical record is one
        c_record = (time.perf_counter_ns() - t) / n / 3
        _costs = (c_event, c_record)
    return _costs


class OverheadEstimate:
    """See the module docstring."""

    def __init__(self):
        self.c_event, self.c_record = record_costs()

    def percent(self, events: int, records: int, interval_ns: int, threads: int) -> float:
        if interval_ns <= 0 or threads <= 0:
            return 0.0
        spent = events * self.c_event + records * self.c_record
        return min(100.0, 100.0 * spent / (interval_ns * threads))
