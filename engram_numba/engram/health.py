"""What the trace collector measures about engram's tracing: its health metrics hook.

* :class:`CognitiveHealth` - the collector hook that keeps a
  :class:`CognitivePatternMetrics`' tracing-health metrics:
  ``engram_cognitive_events_dropped_total``, ``..._event_buffer_utilization``,
  the top-10 tables of priming node pairs and interfered episodes (Space-Saving,
  :class:`~engram_numba.tracing.health.TopKeys`), and
  ``engram_metrics_overhead_percent``.
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

from ..metrics.kinds import COUNTER, HISTOGRAM
from ..tracing.config import TracingConfig
from ..tracing.health import TopKeys
from .events import CognitiveTracer, EventType

__all__ = ["CognitiveHealth", "OverheadEstimate"]


@njit(nogil=True, cache=True)
def _time_events(tracer, n):
    for i in range(n):
        tracer.trace_priming(i % 3, 0.5, i, i)


@njit(nogil=True, cache=True)
def _time_records(metrics, n):
    for i in range(n):
        metrics.record_priming(i % 3, 0.5)


_costs = None


def record_costs(metrics_class) -> tuple:
    """(ns per traced event, ns per metric record), measured once per process (a record:
    ``record_priming`` of a new ``metrics_class()``, a CognitivePatternMetrics)."""
    global _costs
    if _costs is None:
        n = 200_000
        with CognitiveTracer(TracingConfig(ring_buffer_size=1 << 12, max_threads=2)) as tr:
            _time_events(tr, 10)
            t = time.perf_counter_ns()
            _time_events(tr, n)
            c_event = (time.perf_counter_ns() - t) / n
        m = metrics_class()
        _time_records(m, 10)
        t = time.perf_counter_ns()
        _time_records(m, n)
        # record_priming is 3 locked operations; a typical record is one
        c_record = (time.perf_counter_ns() - t) / n / 3
        _costs = (c_event, c_record)
    return _costs


class OverheadEstimate:
    """``engram_metrics_overhead_percent``: 100 * (events * c_event + records * c_record)
    / (interval * recording threads), with the per-record costs measured once per
    process (an estimate: it assumes the recording threads were busy throughout).
    ``metrics_class``: the CognitivePatternMetrics (sub)class whose record is timed."""

    def __init__(self, metrics_class):
        self.c_event, self.c_record = record_costs(metrics_class)

    def percent(self, events: int, records: int, interval_ns: int, threads: int) -> float:
        if interval_ns <= 0 or threads <= 0:
            return 0.0
        spent = events * self.c_event + records * self.c_record
        return min(100.0, 100.0 * spent / (interval_ns * threads))


_HEALTH = {"events_dropped", "event_buffer_utilization", "priming_node_pairs",
           "interference_episode_pairs", "overhead_percent"}


def _metric_records(metrics) -> int:
    """Records made into a metric set so far: counter increments and histogram observations."""
    total = 0
    for attr, snap in metrics.collect().metrics.items():
        if attr in _HEALTH:
            continue
        if snap.kind is COUNTER:
            total += snap.total
        elif snap.kind is HISTOGRAM:
            total += sum(h.count for _, h in snap.items())
    return total


class CognitiveHealth:
    """The collector hook keeping a CognitivePatternMetrics' tracing-health metrics.

    ``engram_cognitive_events_dropped_total``, ``..._event_buffer_utilization``,
    the top-10 tables of priming node pairs and interfered episodes, and
    ``engram_metrics_overhead_percent`` (an estimate: :class:`OverheadEstimate`).
    """

    def __init__(self, metrics, top_capacity: int = 1024):
        self.metrics = metrics
        self.top_pairs = TopKeys(top_capacity)
        self.top_episodes = TopKeys(top_capacity)
        self._overhead = None
        self._last = None

    def on_start(self, collector) -> None:
        self._overhead = OverheadEstimate(type(self.metrics))

    def on_cycle(self, collector, events, before, after) -> None:
        m = self.metrics
        lost = after["total"]["dropped"] + after["no_ring"]
        now_ns = time.monotonic_ns()
        written = {r["ring"]: r["written"] for r in after["rings"]}
        records = _metric_records(m)
        if self._last is not None:
            last_lost, last_written, last_records, last_ns = self._last
            if lost > last_lost:
                m.events_dropped.add(lost - last_lost)
            if self._overhead is not None:
                threads = sum(1 for r, w in written.items() if w > last_written.get(r, 0))
                new_events = sum(written.values()) - sum(last_written.values())
                m.overhead_percent.set(self._overhead.percent(
                    new_events, records - last_records, now_ns - last_ns, threads))
        elif lost:
            m.events_dropped.add(lost)
        self._last = (lost, written, records, now_ns)
        m.event_buffer_utilization.set(before["total"]["utilization"])
        if events.size:
            priming = events[events["event_type"] == EventType.PRIMING]
            if priming.size:
                self.top_pairs.update(np.stack([priming["source_node"], priming["target_node"]], 1))
                m.priming_node_pairs.set(self.top_pairs.top(10))
            interference = events[events["event_type"] == EventType.INTERFERENCE]
            if interference.size:
                self.top_episodes.update(interference["target_episode_id"])
                m.interference_episode_pairs.set(self.top_episodes.top(10))
