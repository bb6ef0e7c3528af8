"""A background thread that drains the rings and hands batches to exporters.

Producers never wait for it: they write into their rings, and whatever the
collector does not drain in time is overwritten and counted as dropped.

Each exporter has its own bounded queue of batches.  A failing exporter never
stops the collector or the other exporters: its failure is logged and
counted, the batch is retried with exponential backoff and jitter (a receiver's
``Retry-After`` honoured up to a cap; see :mod:`.._delivery`, the policy every
exporter follows), and when the queue is full the oldest batch is dropped and
its events counted.  An exporter
raises :class:`PermanentExportError` for a failure that retrying cannot fix
(e.g. the backend rejected the data): it is logged once with its message and
the batch is dropped.  Any other exception, ``BaseException`` included, is a
retryable failure: nothing an exporter raises stops the collector thread.

Loss is never silent.  The collector polls how full the fullest ring is
(:meth:`Tracer.fill`, a compiled pass over the ring headers) between its
cycles, at a pace set by how fast the ring fills, and drains early when a ring
passes ``fill_threshold`` (a quarter full by default) instead of waiting for
its interval: the rest of the ring is the headroom for the collector thread
being late (a busy machine, exporters holding the GIL).  Events
lost anyway are counted by reason: ``overwritten`` in a ring before they were
read, ``no_ring`` (more recording threads than rings), ``invalid`` (an
argument out of range), and each exporter's ``queue_full``, ``rejected`` and
``deadline``.  ``stop()``'s report and ``stats()`` give the total
(``dropped_events``) and the reasons (``dropped``);
``collector.export_metrics`` counts them as ``<set>_events_dropped_total{reason}``;
and the first loss in each interval is logged as a warning (logger
``engram_numba.tracing.collector``) naming the set, the reasons, the rings and
the types they record, and the fix.

Accounting is exact: every event drained is, per exporter, ``exported``,
``dropped`` with a reason (``queue_full``, ``rejected``, ``deadline``), or
``pending`` (still queued, or in an export call that has not returned).
:meth:`TraceCollector.stop` drains the rings, delivers until its deadline and
returns that report.  Exporters that accept a ``deadline`` keyword (every
built-in one does) get a callable returning the ``time.monotonic()`` by which
to give up: infinity until ``stop()`` is called, then its deadline, so an
export already in flight is interrupted at it.  An exporter that ignores it
can keep its batch pending; ``stop()`` says so instead of waiting forever.

``collector.export_metrics`` is a metric set with ``<set>_events_dropped_total{reason}``
and, per exporter, ``engram_export_events_total``, ``engram_export_failures_total`` and
``engram_export_dropped_events_total{reason}`` (serve it next to your other sets).

Hooks: ``hooks=[...]`` objects with ``on_cycle(collector, events, before, after)``
are called on the collector thread after every drain (``before``/``after``:
the tracer's stats around it).  ``metrics=`` takes a metric set that keeps
tracing health through such a hook (its ``collector_hook()``, e.g.
:class:`~engram_numba.CognitivePatternMetrics`).
"""

from __future__ import annotations

import atexit
import collections
import inspect
import logging
import math
import threading
import time
import weakref

import numpy as np

from .._delivery import Backoff, escape, plan_retry
from ..errors import ExportError, PermanentExportError
from .schema import concat

__all__ = ["TraceCollector", "ExportError", "PermanentExportError", "DROP_REASONS",
           "LOSS_REASONS"]

log = logging.getLogger(__name__)

DROP_REASONS = ("queue_full", "rejected", "deadline")
#: Every reason an event is lost: in the tracer, then in an exporter.
RING_REASONS = ("overwritten", "no_ring", "invalid")
LOSS_REASONS = RING_REASONS + DROP_REASONS
MIN_POLL = 0.001               # seconds: the shortest wait between two fill checks
MAX_POLL = 0.05                # seconds: the longest (unless the interval is shorter)


def _ring_losses(stats) -> dict:
    """Events the tracer lost so far, by reason, from its ``stats()``."""
    return {"overwritten": int(stats["total"]["dropped"]),
            "no_ring": int(stats.get("no_ring", 0)), "invalid": int(stats.get("invalid", 0))}


def _takes_deadline(fn) -> bool:
    try:
        return "deadline" in inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False


class _Exporter:
    def __init__(self, exporter, max_batches, backoff=(0.1, 30.0)):
        if hasattr(exporter, "export"):
            self.export = exporter.export
        elif callable(exporter):
            self.export = exporter
        else:
            raise TypeError(f"an exporter is a callable taking events, or an object with "
                            f"export(events); got {exporter!r}")
        self.target = exporter
        self.with_deadline = _takes_deadline(self.export)
        self.name = getattr(exporter, "name", None) or getattr(exporter, "__name__", None) \
            or type(exporter).__name__
        self.queue = collections.deque()
        self.max_batches = max_batches
        self.backoff = Backoff(*backoff)
        self.next_attempt = 0.0
        self.exported_events = 0
        self.exported_batches = 0
        self.failures = 0
        self.dropped = dict.fromkeys(DROP_REASONS, 0)
        self.last_error = None
        self.permanent_messages = set()
        self.failing = False
        self.in_flight = None          # the batch inside an export call, if any
        self.lock = threading.Lock()
        self.wake = threading.Event()
        self.thread = None

    @property
    def dropped_events(self) -> int:
        return sum(self.dropped.values())

    @property
    def in_call(self) -> bool:
        return self.in_flight is not None

    def pending_events(self) -> int:
        with self.lock:
            flight = self.in_flight.size if self.in_flight is not None else 0
            return sum(b.size for b in self.queue) + flight

    def stats(self) -> dict:
        with self.lock:
            queued = sum(b.size for b in self.queue)
            flight = self.in_flight.size if self.in_flight is not None else 0
            batches = len(self.queue) + (self.in_flight is not None)
        return {"exported_events": self.exported_events, "exported_batches": self.exported_batches,
                "failures": self.failures, "dropped_events": self.dropped_events,
                "dropped": dict(self.dropped), "queued_batches": batches,
                "queued_events": queued + flight, "in_export_call": flight > 0,
                "last_error": self.last_error}


_live = weakref.WeakSet()


@atexit.register
def _stop_all():
    for collector in list(_live):
        collector.stop()


class TraceCollector:
    """Drain ``tracer`` every ``interval_ms`` and deliver batches to ``exporters``.

    An exporter is a callable taking a structured array of events, or an object
    with ``export(events)`` (optionally ``export(events, deadline=...)``) and
    optionally ``name``, ``bind(tracer)`` and ``shutdown()``.  Defaults for the
    interval and batch size come from the tracer's config.  The collector drains
    every ``interval_ms``, and early when a ring is ``fill_threshold`` full; each
    exporter gets its own thread and a queue of at most ``max_queued_batches``
    batches, failed exports are retried with exponential ``backoff`` (initial,
    maximum seconds).  ``stop()`` reports every event as exported, dropped (by
    reason) or pending; losses are also logged and counted in ``export_metrics``.
    """

    def __init__(self, tracer, exporters=(), *, metrics=None, hooks=(),
                 interval_ms: int | None = None, batch_size: int | None = None,
                 max_queued_batches: int = 64, backoff: tuple = (0.1, 30.0),
                 fill_threshold: float = 0.25):
        config = getattr(tracer, "config", None)
        if not (hasattr(tracer, "drain") and hasattr(tracer, "stats")):
            raise TypeError(f"tracer must be a tracer (with drain() and stats()), got {tracer!r}")
        self.tracer = tracer
        interval_ms = interval_ms if interval_ms is not None else (
            config.export_interval_ms if config else 5000)
        batch_size = batch_size if batch_size is not None else (
            config.export_batch_size if config else 1000)
        for name, value in (("interval_ms", interval_ms), ("batch_size", batch_size),
                            ("max_queued_batches", max_queued_batches)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise ValueError(f"{name} must be a positive number, got {value!r}")
        try:
            self.backoff_initial, self.backoff_max = (float(x) for x in backoff)
        except (TypeError, ValueError):
            raise ValueError(f"backoff must be (initial, maximum) seconds, got {backoff!r}") from None
        if not 0 < self.backoff_initial <= self.backoff_max < math.inf:
            raise ValueError(f"backoff must satisfy 0 < initial <= maximum < inf, got "
                             f"{backoff!r}")
        if isinstance(fill_threshold, bool) or not isinstance(fill_threshold, (int, float)) \
                or not 0 < fill_threshold <= 1:
            raise ValueError(f"fill_threshold must be a fraction of a ring in (0, 1], got "
                             f"{fill_threshold!r}")
        self.interval = interval_ms / 1000
        self.fill_threshold = float(fill_threshold)
        self.batch_size = int(batch_size)
        self.metrics = metrics
        self.hooks = list(hooks)
        if metrics is not None:
            make_hook = getattr(metrics, "collector_hook", None)
            if make_hook is None:
                raise TypeError(
                    f"metrics=: {type(metrics).__name__} keeps no tracing health (it has no "
                    f"collector_hook()); pass a set that does, such as CognitivePatternMetrics, "
                    f"or give hooks=[...]")
            self.hooks.append(make_hook())
        for hook in self.hooks:
            if not callable(getattr(hook, "on_cycle", None)):
                raise TypeError(f"a hook needs on_cycle(collector, events, before, after); "
                                f"got {hook!r}")
        self.exporters = [_Exporter(e, int(max_queued_batches),
                                    (self.backoff_initial, self.backoff_max)) for e in exporters]
        for e in self.exporters:                 # exporters that want to know the tracer
            bind = getattr(e.target, "bind", None)
            if callable(bind):
                bind(tracer)
        seen = {}
        for e in self.exporters:                 # distinct names: they are label values
            seen[e.name] = seen.get(e.name, 0) + 1
            if seen[e.name] > 1:
                e.name = f"{e.name}#{seen[e.name]}"
        layout = getattr(tracer, "layout", None)
        self.set_name = getattr(layout, "name", None) or "trace"
        self.export_metrics = _export_metrics(self.set_name, [e.name for e in self.exporters])
        self.drained_events = 0
        self.cycles = 0
        self.early_drains = 0
        self._fill = getattr(tracer, "fill", None)
        self._fill_rate = 0.0               # how fast the fullest ring fills (fraction/s)
        self._baseline = None               # the tracer's losses when the collector was made
        self._ring_lost = dict.fromkeys(RING_REASONS, 0)
        self._warned_at = -math.inf         # when the last loss warning was logged
        self._unwarned = dict.fromkeys(LOSS_REASONS, 0)   # lost since that warning
        self.cpu_seconds = 0.0
        self.error = None
        self._deadline = None
        self._shut_down = False
        self._drained = threading.Event()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread = None
        self._lock = threading.RLock()
        self._losses()                       # the baseline: what was lost before it existed

    # -- life cycle ---------------------------------------------------------------

    def start(self) -> "TraceCollector":
        """Start draining (one thread) and delivering (one thread per exporter).

        The first drain runs here, in the calling thread: the draining code (and the
        exporters' encoders, compiled when the collector was made) is ready before the
        collector's thread starts, so no compilation holds it up while rings fill."""
        if self._thread is not None:
            raise RuntimeError("collector already started")
        try:
            self._drain_cycle()
        except Exception:           # the drain thread meets it again, and reports it
            log.debug("trace collector: the first drain failed", exc_info=True)
        for hook in self.hooks:
            start = getattr(hook, "on_start", None)
            if start is not None:
                start(self)
        self._thread = threading.Thread(target=self._run, name="engram-trace-collector",
                                        daemon=True)
        for e in self.exporters:
            e.thread = threading.Thread(target=self._send_loop, args=(e,), daemon=True,
                                        name=f"engram-export-{e.name}")
        _live.add(self)
        self._thread.start()
        for e in self.exporters:
            e.thread.start()
        return self

    @property
    def alive(self) -> bool:
        """True while the drain thread or any exporter's thread still runs."""
        threads = [self._thread] + [e.thread for e in self.exporters]
        return any(t is not None and t.is_alive() for t in threads)

    def stop(self, timeout: float = 5.0) -> dict:
        """Drain what is left and deliver it until ``timeout`` seconds from now.

        Returns the delivery report (see :meth:`report`): after it, every event
        drained is exported, dropped with a reason, or reported pending.  A
        second call waits for the first one's deadline and reports again.
        """
        if self._thread is None:
            return self.report()
        if not self._stopping.is_set():
            self._deadline = time.monotonic() + max(0.0, float(timeout))
            self._stopping.set()
            self._wake.set()
        for t in [self._thread] + [e.thread for e in self.exporters]:
            t.join(max(0.0, self._deadline - time.monotonic()) + 0.5)
        report = self.report()
        if not self.alive:
            _live.discard(self)
            if not self._shut_down:
                self._shut_down = True
                self._shutdown_exporters()
        elif report["pending_events"]:
            log.warning("trace collector: %d events still pending at the deadline (an exporter "
                        "has not returned: %s)", report["pending_events"],
                        [e.name for e in self.exporters if e.in_call])
        if self.error:
            log.error("trace collector thread died: %s", self.error)
        return report

    def report(self) -> dict:
        """Drained, exported, dropped (by reason) and pending events, per exporter and in total.

        ``pending`` counts events still queued or in an export call that has
        not returned.  ``alive`` says whether a collector thread still runs,
        ``error`` why one died, if it did.
        """
        per = {}
        for e in self.exporters:
            per[e.name] = {"exported": e.exported_events, "dropped": dict(e.dropped),
                           "pending": e.pending_events()}
        dropped = self._dropped_by_reason()
        return {"drained_events": self.drained_events,
                "exported_events": sum(p["exported"] for p in per.values()),
                "dropped_events": sum(dropped.values()), "dropped": dropped,
                "pending_events": sum(p["pending"] for p in per.values()),
                "exporters": per, "alive": self.alive, "error": self.error}

    def _dropped_by_reason(self) -> dict:
        """Everything lost since the start, by reason (see :data:`LOSS_REASONS`): the
        tracer's losses, then each exporter's deliveries dropped, summed over exporters."""
        if self._thread is None or not self.alive:
            self._losses()                   # not running: read the tracer now
        out = dict(self._ring_lost)
        for reason in DROP_REASONS:
            out[reason] = sum(e.dropped[reason] for e in self.exporters)
        return out

    def _losses(self) -> dict:
        """The tracer's losses since the collector was made (the first call sets the
        baseline)."""
        try:
            now = _ring_losses(self.tracer.stats())
        except Exception:                    # a broken tracer: reported by the drain thread
            return dict(self._ring_lost)
        if self._baseline is None:
            self._baseline = now
        self._ring_lost = {k: max(0, now[k] - self._baseline[k]) for k in RING_REASONS}
        return dict(self._ring_lost)

    def _shutdown_exporters(self):
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
        """Drain now; without started threads, also try every queued batch once (here)."""
        self._drain_cycle()
        if self._thread is None:
            for e in self.exporters:
                self._deliver(e, time.monotonic())

    # -- work -----------------------------------------------------------------------

    def _run(self):
        """The drain thread."""
        try:
            while not self._stopping.is_set():
                self._drain_cycle()
                self._wait_for_cycle(time.monotonic() + self.interval)
            self._drain_cycle()                  # final: everything still in the rings
        except BaseException as exc:  # never silent: stats(), report() and stop() say it
            self.error = f"{type(exc).__name__}: {exc}"
            log.exception("trace collector thread died")
        finally:
            self._drained.set()
            for e in self.exporters:
                e.wake.set()

    def _wait_for_cycle(self, due: float) -> None:
        """Sleep until ``due`` (the next interval), a wake-up (stop), or a ring filling past
        the threshold, whichever comes first.  The fill is checked at a pace set by how
        fast it grows (the last rate seen, kept across cycles): half the time the fullest
        ring needs to reach the threshold, between MIN_POLL and MAX_POLL."""
        fill = self._fill
        began = last_time = time.monotonic()
        last_fill = 0.0
        while True:
            now = time.monotonic()
            if now >= due:
                return
            wait = due - now
            if fill is not None:
                try:
                    level = fill()
                except Exception:            # closed or broken: the drain will say so
                    level, fill = 0.0, None
                if now > last_time and level > last_fill:
                    self._fill_rate = (level - last_fill) / (now - last_time)
                if level >= self.fill_threshold:
                    self.early_drains += 1
                    if now > began:
                        self._fill_rate = level / (now - began)
                    return
                poll = min(self.interval, MAX_POLL)
                if self._fill_rate > 0:
                    poll = (self.fill_threshold - level) / self._fill_rate / 2
                last_fill, last_time = level, now
                wait = min(wait, max(MIN_POLL, min(poll, self.interval, MAX_POLL)))
            if self._wake.wait(wait):
                self._wake.clear()
                return

    def _send_loop(self, e):
        """One exporter's thread: deliver its queue, then the rest until the deadline."""
        try:
            while not self._drained.is_set():
                self._deliver(e, time.monotonic())
                wait = e.next_attempt - time.monotonic() if e.queue else self.interval
                e.wake.wait(max(0.0, min(wait, self.interval)))
                e.wake.clear()
            while e.queue and time.monotonic() < self._deadline:
                self._deliver(e, time.monotonic(), final=True)
                if e.queue:
                    time.sleep(max(0.0, min(e.next_attempt, self._deadline) - time.monotonic()))
            with e.lock:
                lost = sum(b.size for b in e.queue)
                e.queue.clear()
            if lost:
                self._dropped(e, lost, "deadline")
                log.warning("exporter %s: %d events undelivered at the shutdown deadline",
                            e.name, lost)
        except BaseException as exc:
            self.error = f"exporter thread {e.name}: {type(exc).__name__}: {exc}"
            log.exception("trace collector: exporter thread %s died", e.name)

    def _current_deadline(self) -> float:
        """When exports must give up: the stop() deadline, or never before stop()."""
        return self._deadline if self._deadline is not None else math.inf

    def _dropped(self, e, n: int, reason: str) -> None:
        e.dropped[reason] += n
        if n:
            self.export_metrics.dropped.add(n, self.exporters.index(e), reason)
            self.export_metrics.events_dropped.add(n, reason)
            self._unwarned[reason] += n

    def _failed(self, e) -> None:
        e.failures += 1
        self.export_metrics.failures.inc(self.exporters.index(e))

    def _drain_cycle(self) -> None:
        cpu = time.thread_time()
        try:
            with self._lock:
                before = self.tracer.stats() if self.hooks else None
                events = self.tracer.drain()
                self.drained_events += events.size
                self.cycles += 1
                last = dict(self._ring_lost)
                now = self._losses()
                for reason in RING_REASONS:
                    new = now[reason] - last[reason]
                    if new > 0:
                        self.export_metrics.events_dropped.add(new, reason)
                        self._unwarned[reason] += new
                if self.hooks:
                    after = self.tracer.stats()
                    for hook in self.hooks:
                        try:
                            hook.on_cycle(self, events, before, after)
                        except Exception:
                            log.exception("collector hook %r failed", hook)
                for start in range(0, events.size, self.batch_size):
                    batch = events[start:start + self.batch_size]
                    for e in self.exporters:
                        with e.lock:
                            if e.queue and e.queue[-1].size + batch.size <= self.batch_size:
                                # early drains make small batches: fill the last one up
                                e.queue[-1] = concat([e.queue[-1], batch])
                                continue
                            e.queue.append(batch)
                            full = []
                            while len(e.queue) > e.max_batches:
                                full.append(e.queue.popleft())
                        for dropped in full:
                            self._dropped(e, dropped.size, "queue_full")
                            log.debug("exporter %s: queue full, dropped %d events", e.name,
                                      dropped.size)
                if events.size:
                    for e in self.exporters:
                        e.wake.set()
                self._warn_of_losses(events)
        finally:
            self.cpu_seconds += time.thread_time() - cpu

    def _warn_of_losses(self, events) -> None:
        """Log a warning for events lost since the last one, at most once per interval."""
        lost = {k: v for k, v in self._unwarned.items() if v}
        if not lost:
            return
        now = time.monotonic()
        if now - self._warned_at < self.interval:
            return                            # said already in this interval; kept for the next
        since = now - self._warned_at
        self._warned_at = now
        self._unwarned = dict.fromkeys(LOSS_REASONS, 0)
        total = sum(lost.values())
        parts = [f"{n:,} {_REASON_TEXT[k]}" for k, n in lost.items()]
        where = self._losing_rings(events) if lost.get("overwritten") else ""
        span = "since the collector was made" if since == math.inf else \
            f"in the last {since:.1f} s"
        log.warning("trace collector: %s events of set %r lost %s: %s%s. %s", f"{total:,}",
                    self.set_name, span, ", ".join(parts), where,
                    " ".join(_REASON_FIX[k] for k in lost))

    def _losing_rings(self, events) -> str:
        """'; rings 0 (thread 123: step) overwrote ...': where the overwrites were."""
        try:
            rings = [r for r in self.tracer.stats()["rings"]
                     if r.get("peak_utilization", 0) >= 100]
            layout = self.tracer.layout
        except Exception:
            return ""
        if not rings:
            return ""
        names = []
        for r in rings[:4]:
            mine = events[events["ring"] == r["ring"]] if events.size else events
            kinds = sorted({layout.types[t].name for t in np.unique(mine["event_type"])
                            if t < len(layout.types)}) if mine.size else []
            names.append(f"ring {r['ring']} (OS thread {r['thread']}"
                         f"{', recording ' + '/'.join(kinds) if kinds else ''})")
        return "; overflowing: " + ", ".join(names) + (" ..." if len(rings) > 4 else "")

    def _deliver(self, e, now: float, final: bool = False) -> None:
        """Export ``e``'s queued batches in order until one fails (then back off)."""
        cpu = time.thread_time()
        try:
            self._deliver_batches(e, now, final)
        finally:
            self.cpu_seconds += time.thread_time() - cpu

    def _deliver_batches(self, e, now: float, final: bool) -> None:
        while final or now >= e.next_attempt:
            # past stop()'s deadline nothing more is handed to an exporter, also when a call
            # begun before stop() returns late: what is left is dropped as "deadline"
            deadline = self._deadline
            if deadline is not None and time.monotonic() >= deadline:
                return
            with e.lock:
                if not e.queue:
                    return
                batch = e.in_flight = e.queue.popleft()
            try:
                if e.with_deadline:
                    e.export(batch, deadline=self._current_deadline)
                else:
                    e.export(batch)
            except PermanentExportError as exc:
                e.in_flight = None
                self._failed(e)
                self._dropped(e, batch.size, "rejected")
                e.last_error = escape(str(exc), 2000)
                if str(exc) not in e.permanent_messages:
                    e.permanent_messages.add(str(exc))
                    log.error("exporter %s rejected a batch (not retried): %s", e.name, exc)
                continue
            except BaseException as exc:  # any failure, SystemExit too: retry with backoff
                with e.lock:
                    e.queue.appendleft(batch)
                    e.in_flight = None
                    over = e.queue.popleft() if len(e.queue) > e.max_batches else None
                if over is not None:
                    self._dropped(e, over.size, "queue_full")
                self._failed(e)
                e.last_error = f"{type(exc).__name__}: {escape(str(exc), 2000)}"
                plan = plan_retry(exc, e.backoff, self._current_deadline())
                delay = plan.delay if plan.delay is not None else \
                    max(0.0, self._current_deadline() - time.monotonic())
                e.next_attempt = time.monotonic() + delay
                (log.debug if e.failing else log.warning)(
                    "exporter %s failed (%s); retrying in %.2f s%s", e.name, e.last_error, delay,
                    f" ({plan.note})" if plan.note else "")
                e.failing = True
                return
            e.in_flight = None
            e.exported_events += batch.size
            e.exported_batches += 1
            self.export_metrics.exported.add(batch.size, self.exporters.index(e))
            if e.failing:
                log.info("exporter %s recovered", e.name)
            e.failing = False
            e.backoff.reset()
            e.next_attempt = 0.0

    def stats(self) -> dict:
        """Drained events, cycles (``early_drains``: cycles started by a filling ring), CPU
        time spent, whether the threads are alive (and why one died), everything lost
        (``dropped_events``, ``dropped`` by reason, as in :meth:`report`), and per
        exporter: exported, failures, dropped (by reason), queued."""
        dropped = self._dropped_by_reason()
        return {"drained_events": self.drained_events, "cycles": self.cycles,
                "early_drains": self.early_drains, "cpu_seconds": self.cpu_seconds,
                "alive": self.alive, "error": self.error,
                "dropped_events": sum(dropped.values()), "dropped": dropped,
                "exporters": {e.name: e.stats() for e in self.exporters}}


_REASON_TEXT = {"overwritten": "overwritten in rings before they were drained",
                "no_ring": "recorded by threads that found no free ring",
                "invalid": "refused for an argument out of range",
                "queue_full": "dropped from a full exporter queue",
                "rejected": "rejected by a backend",
                "deadline": "undelivered at the shutdown deadline"}
_REASON_FIX = {"overwritten": "Raise TracingConfig(ring_buffer_size=...), lower the sample "
                              "rates or the collector's fill_threshold.",
               "no_ring": "Raise TracingConfig(max_threads=...).",
               "invalid": "Check the values passed to emit()/begin() and that every end() "
                          "has its begin().",
               "queue_full": "An exporter is slower than the events: raise "
                             "max_queued_batches or fix the backend.",
               "rejected": "See the exporter's error above.",
               "deadline": "Give stop() a longer timeout."}


def _export_metrics(set_name, names):
    """A metric set of the collector's losses by reason and per-exporter delivery counters
    (label values: the exporter names)."""
    from ..metrics import Counter, MetricSet
    attrs = {"events_dropped": Counter(
        f"{set_name}_events_dropped_total",
        "Traced events lost, by reason: overwritten in a ring before the collector read "
        "them, recorded by a thread without a ring, refused as invalid, or dropped by an "
        "exporter (queue_full, rejected, deadline; summed over exporters)",
        labels={"reason": list(LOSS_REASONS)})}
    if not names:
        return type("ExportMetrics", (MetricSet,), attrs, name="engram_export")()
    labels = {"exporter": list(names)}
    cls = type("ExportMetrics", (MetricSet,), {**attrs,
        "exported": Counter("engram_export_events_total", "Events delivered by each exporter",
                            labels=labels),
        "failures": Counter("engram_export_failures_total",
                            "Failed export attempts (retried or not)", labels=labels),
        "dropped": Counter("engram_export_dropped_events_total",
                           "Events an exporter could not deliver, by reason: queue_full, "
                           "rejected by the backend, or still undelivered at the shutdown "
                           "deadline", labels={**labels, "reason": list(DROP_REASONS)}),
    }, name="engram_export")
    return cls()
