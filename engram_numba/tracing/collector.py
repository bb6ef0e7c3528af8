"""A background thread that drains the rings and hands batches to exporters.

Producers never wait for it: they write into their rings, and whatever the
collector does not drain in time is overwritten and counted as dropped.

Each exporter has its own bounded queue of batches.  A failing exporter never
stops the collector or the other exporters: its failure is logged and
counted, the batch is retried with exponential backoff and jitter, and when the
queue is full the oldest batch is dropped and its events counted.  An exporter
raises :class:`PermanentExportError` for a failure that retrying cannot fix
(e.g. the backend rejected the data): it is logged once with its message and
the batch is dropped.

``collector.export_metrics`` is a metric set with, per exporter,
``engram_export_events_total``, ``engram_export_failures_total`` and
``engram_export_dropped_events_total`` (serve it next to your other sets).

With a :class:`~engram_numba.CognitivePatternMetrics` the collector keeps the
tracing health metrics up to date: ``engram_cognitive_events_dropped_total``,
``engram_cognitive_event_buffer_utilization``, the top-10 tables of priming
node pairs and interfered episodes, and ``engram_metrics_overhead_percent``
(see :mod:`.health`).
"""

from __future__ import annotations

import atexit
import collections
import logging
import random
import threading
import time
import weakref

import numpy as np

from .events import EventType
from .health import OverheadEstimate, TopKeys

__all__ = ["TraceCollector", "ExportError", "PermanentExportError"]

log = logging.getLogger(__name__)


class ExportError(Exception):
    """An export failed; the batch is retried later."""

    def __init__(self, message, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after


class PermanentExportError(ExportError):
    """An export failed in a way retrying cannot fix; the batch is dropped."""


class _Exporter:
    def __init__(self, exporter, max_batches):
        self.target = exporter
        self.export = exporter.export if hasattr(exporter, "export") else exporter
        self.name = getattr(exporter, "name", None) or getattr(exporter, "__name__", None) \
            or type(exporter).__name__
        self.queue = collections.deque()
        self.max_batches = max_batches
        self.backoff = 0.0
        self.next_attempt = 0.0
        self.exported_events = 0
        self.exported_batches = 0
        self.failures = 0
        self.dropped_events = 0
        self.last_error = None
        self.permanent_messages = set()
        self.failing = False

    def stats(self) -> dict:
        return {"exported_events": self.exported_events, "exported_batches": self.exported_batches,
                "failures": self.failures, "dropped_events": self.dropped_events,
                "queued_batches": len(self.queue),
                "queued_events": sum(b.size for b in self.queue), "last_error": self.last_error}


_live = weakref.WeakSet()


@atexit.register
def _stop_all():
    for collector in list(_live):
        collector.stop()


class TraceCollector:
    """Drain ``tracer`` every ``interval_ms`` and deliver batches to ``exporters``.

    An exporter is a callable taking a structured array of events
    (:data:`EVENT_DTYPE`), or an object with ``export(events)`` and optionally
    ``name`` and ``shutdown()``.  Defaults for the interval and batch size come
    from the tracer's config.
    """

    def __init__(self, tracer, exporters=(), *, metrics=None, interval_ms: int | None = None,
                 batch_size: int | None = None, max_queued_batches: int = 64,
                 backoff: tuple = (0.1, 30.0), top_capacity: int = 1024):
        config = tracer.config
        self.tracer = tracer
        self.metrics = metrics
        self.interval = (interval_ms or (config.export_interval_ms if config else 5000)) / 1000
        self.batch_size = batch_size or (config.export_batch_size if config else 1000)
        if self.interval <= 0 or self.batch_size <= 0 or max_queued_batches <= 0:
            raise ValueError("interval_ms, batch_size and max_queued_batches must be positive")
        self.backoff_initial, self.backoff_max = backoff
        self.exporters = [_Exporter(e, max_queued_batches) for e in exporters]
        seen = {}
        for e in self.exporters:                 # distinct names: they are label values
            seen[e.name] = seen.get(e.name, 0) + 1
            if seen[e.name] > 1:
                e.name = f"{e.name}#{seen[e.name]}"
        self.export_metrics = _export_metrics([e.name for e in self.exporters])
        self.drained_events = 0
        self.cycles = 0
        self.cpu_seconds = 0.0
        self.top_pairs = TopKeys(top_capacity)
        self.top_episodes = TopKeys(top_capacity)
        self._overhead = None
        self._last = None
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread = None
        self._lock = threading.Lock()

    # -- life cycle ---------------------------------------------------------------

    def start(self) -> "TraceCollector":
        if self._thread is not None:
            raise RuntimeError("collector already started")
        if self.metrics is not None:
            self._overhead = OverheadEstimate()
        self._thread = threading.Thread(target=self._run, name="engram-trace-collector",
                                        daemon=True)
        _live.add(self)
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Drain everything left and deliver it, giving up after ``timeout`` seconds."""
        if self._thread is None or self._stopping.is_set():
            return
        self._deadline = time.monotonic() + timeout
        self._stopping.set()
        self._wake.set()
        self._thread.join(timeout + 1.0)
        _live.discard(self)
        for e in self.exporters:
            shutdown = getattr(e.target, "shutdown", None)
            if shutdown is not None:
                try:
                    shutdown()
                except Exception:
                    log.exception("exporter %s failed to shut down", e.name)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def flush(self) -> None:
        """Drain now and try every queued batch once (on the calling thread)."""
        self._cycle(time.monotonic())

    # -- work -----------------------------------------------------------------------

    def _run(self):
        next_cycle = time.monotonic()
        while not self._stopping.is_set():
            next_cycle += self.interval
            self._cycle(time.monotonic())
            self._wake.wait(max(0.0, min(next_cycle, self._next_retry()) - time.monotonic()))
            self._wake.clear()
        # final: everything still in the rings, then retries until the deadline
        self._cycle(time.monotonic(), final=True)
        while any(e.queue for e in self.exporters) and time.monotonic() < self._deadline:
            time.sleep(max(0.0, min(self._next_retry(), self._deadline) - time.monotonic()))
            self._deliver(time.monotonic(), final=True)
        for e in self.exporters:
            lost = sum(b.size for b in e.queue)
            if lost:
                self._dropped(e, lost)
                log.warning("exporter %s: %d events undelivered at shutdown", e.name, lost)
                e.queue.clear()

    def _dropped(self, e, n: int) -> None:
        e.dropped_events += n
        if n:
            self.export_metrics.dropped.add(n, self.exporters.index(e))

    def _failed(self, e) -> None:
        e.failures += 1
        self.export_metrics.failures.inc(self.exporters.index(e))

    def _next_retry(self) -> float:
        times = [e.next_attempt for e in self.exporters if e.queue]
        return min(times) if times else float("inf")

    def _cycle(self, now: float, final: bool = False) -> None:
        cpu = time.thread_time()
        try:
            self._cycle_locked(now, final)
        finally:
            self.cpu_seconds += time.thread_time() - cpu

    def _cycle_locked(self, now: float, final: bool) -> None:
        with self._lock:
            before = self.tracer.stats() if self.metrics is not None else None
            events = self.tracer.drain()
            self.drained_events += events.size
            self.cycles += 1
            if self.metrics is not None:
                self._update_health(before, events)
            for start in range(0, events.size, self.batch_size):
                batch = events[start:start + self.batch_size]
                for e in self.exporters:
                    if len(e.queue) >= e.max_batches:
                        dropped = e.queue.popleft()
                        self._dropped(e, dropped.size)
                        log.debug("exporter %s: queue full, dropped %d events", e.name,
                                  dropped.size)
                    e.queue.append(batch)
            self._deliver(now, final)

    def _deliver(self, now: float, final: bool = False) -> None:
        for e in self.exporters:
            while e.queue and (final or now >= e.next_attempt):
                batch = e.queue[0]
                try:
                    e.export(batch)
                except PermanentExportError as exc:
                    e.queue.popleft()
                    self._failed(e)
                    self._dropped(e, batch.size)
                    e.last_error = str(exc)
                    if str(exc) not in e.permanent_messages:
                        e.permanent_messages.add(str(exc))
                        log.error("exporter %s rejected a batch (not retried): %s", e.name, exc)
                    continue
                except Exception as exc:  # any failure: retry with backoff
                    self._failed(e)
                    e.last_error = f"{type(exc).__name__}: {exc}"
                    e.backoff = min(self.backoff_max, max(self.backoff_initial, e.backoff * 2))
                    delay = e.backoff * random.uniform(0.5, 1.0)
                    retry_after = getattr(exc, "retry_after", None)
                    if retry_after is not None:
                        delay = max(delay, float(retry_after))
                    e.next_attempt = time.monotonic() + delay
                    (log.debug if e.failing else log.warning)(
                        "exporter %s failed (%s); retrying in %.2f s", e.name, e.last_error, delay)
                    e.failing = True
                    break
                e.queue.popleft()
                e.exported_events += batch.size
                e.exported_batches += 1
                self.export_metrics.exported.add(batch.size, self.exporters.index(e))
                if e.failing:
                    log.info("exporter %s recovered", e.name)
                e.failing = False
                e.backoff = 0.0
                e.next_attempt = 0.0

    def _update_health(self, before: dict, events: np.ndarray) -> None:
        m = self.metrics
        after = self.tracer.stats()
        lost = after["total"]["dropped"] + after["no_ring"]
        now_ns = time.monotonic_ns()
        written = {r["ring"]: r["written"] for r in after["rings"]}
        records = _metric_records(m)
        if self._last is not None:
            last_lost, last_written, last_records, last_ns = self._last
            if lost > last_lost:
                m.events_dropped.add(lost - last_lost)
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

    def stats(self) -> dict:
        """Drained events, cycles, CPU time spent, and per exporter: exported, failures,
        dropped, queued."""
        return {"drained_events": self.drained_events, "cycles": self.cycles,
                "cpu_seconds": self.cpu_seconds,
                "exporters": {e.name: e.stats() for e in self.exporters}}


def _export_metrics(names):
    """A metric set of per-exporter delivery counters (label values: the exporter names)."""
    from ..metrics import Counter, MetricSet
    if not names:
        return _NoExporters()
    labels = {"exporter": list(names)}
    cls = type("ExportMetrics", (MetricSet,), {
        "exported": Counter("engram_export_events_total", "Events delivered by each exporter",
                            labels=labels),
        "failures": Counter("engram_export_failures_total",
                            "Failed export attempts (retried or not)", labels=labels),
        "dropped": Counter("engram_export_dropped_events_total",
                           "Events an exporter could not deliver: queue full, rejected, or "
                           "still queued at shutdown", labels=labels),
    }, name="engram_export")
    return cls()


class _NoExporters:
    def collect(self):
        raise ValueError("the collector has no exporters")


_HEALTH = {"events_dropped", "event_buffer_utilization", "priming_node_pairs",
           "interference_episode_pairs", "overhead_percent"}


def _metric_records(metrics) -> int:
    """Records made into a metric set so far: counter increments and histogram observations."""
    total = 0
    for attr, snap in metrics.collect().metrics.items():
        if attr in _HEALTH:
            continue
        if snap.kind == "counter":
            total += snap.total
        elif snap.kind == "histogram":
            total += sum(h.count for _, h in snap.items())
    return total

