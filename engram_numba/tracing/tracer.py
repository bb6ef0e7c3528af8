"""Tracer: bounded, lock-free event tracing of any event set, from kernels and Python.

::

    tracer = Tracer(SolverEvents, TracingConfig(ring_buffer_size=1 << 14))
    kernel(tracer, ...)        # inside: tr.iteration.emit(r, k); tr.solve.begin(n) ... end()
    events = tracer.drain()    # time-ordered structured array of the set's dtype
    tracer.stats()             # written / delivered / dropped per ring

Every recording thread gets its own ring (see :mod:`._ring`) and keeps it for
the tracer's lifetime, or until it calls :meth:`Tracer.release_thread`; when
more threads record than there are rings, the extra events are dropped and
counted (``stats()["no_ring"]``), never written into another thread's ring.
Memory is fixed at creation.  From Python the same calls work
(``tracer.iteration.emit(0.5, 3)``): every argument is validated first, then
the compiled recording code runs.
"""

from __future__ import annotations

import json
import threading
import time

import numpy as np
from numba import njit

from .._kernel_arg import KernelArgument, current_pid, object_from_address
from .._region import CACHE_LINE, KIND_TRACE, Region, RegionError, round_up
from .._values import as_integer, as_rate
from ..clock import Anchor, now_triple, tsc_is_reliable
from . import _njit
from . import _ring as ringbuf
from .config import ALWAYS, MAX_RING, MAX_THREADS, TracingConfig, threshold
from .context import CURRENT, TraceContext, resolve
from .kinds import EVENT, SPAN
from .schema import FLAG_CONTEXT, SLOT_SIZE, Event, EventSet, reserve_names
from .spans import SpanContext
from ._threads import note_thread, pthread_self as _libc_pthread_self

__all__ = ["Tracer"]


def checked_arguments(event_set, config, who: str) -> TracingConfig:
    """``who(event_set, config)``'s arguments checked: an EventSet class that declares
    events, and a valid TracingConfig (the default when None), which is returned."""
    if not (isinstance(event_set, type) and issubclass(event_set, EventSet)):
        raise TypeError(f"{who} takes an EventSet class (and a TracingConfig), got "
                        f"{event_set!r}")
    if event_set.layout is None:
        raise ValueError(f"{event_set.__name__} declares no events")
    config = TracingConfig() if config is None else config
    if not isinstance(config, TracingConfig):
        raise TypeError(f"config must be a TracingConfig, got {config!r}")
    config.validate()
    return config

LAYOUT_VERSION = 4
_WORDS = SLOT_SIZE // 8


def _baseline(words) -> Anchor:
    """The TSC rate measured since the tracer was created, anchored now.

    A baseline under a millisecond is too short to measure a rate; it is
    stretched by waiting 2 ms.  A header whose reference is unusable (a damaged
    file) falls back to a rate measured here and now.
    """
    tsc_ref, mono_ref = int(words[ringbuf.TSC_REF_OFF // 8]), int(words[ringbuf.MONO_REF_OFF // 8])
    tsc, mono, unix = now_triple()
    if mono - mono_ref < 1_000_000:
        time.sleep(0.002)
        tsc, mono, unix = now_triple()
    try:
        return Anchor.from_rate(tsc, unix, (tsc - tsc_ref) / (mono - mono_ref))
    except (ValueError, ZeroDivisionError):
        tsc0, mono0, _ = now_triple()
        time.sleep(0.002)
        tsc, mono, unix = now_triple()
        return Anchor.from_rate(tsc, unix, (tsc - tsc0) / max(mono - mono0, 1))


def _description(layout, n_rings, capacity, clock) -> str:
    return json.dumps({"format": "engram-numba.trace-rings", "layout_version": LAYOUT_VERSION,
                       "rings": n_rings, "capacity": capacity, "clock": clock,
                       "event_size": SLOT_SIZE, "events": json.loads(layout.description)},
                      sort_keys=True, separators=(",", ":"))


class Tracer(KernelArgument):
    """Per-thread rings of 64-byte events of one :class:`EventSet`.

    ``Tracer(EventSet, TracingConfig(...))`` reserves ``max_threads`` rings of
    ``ring_buffer_size`` events (fixed memory).  Pass the tracer to kernels and record with
    ``tr.<event>.emit(*fields)``, ``tr.<span>.begin(*fields)`` / ``end()``, from Python with
    the same calls.  ``drain()`` returns the new events as records (unix-ns timestamps, OS
    thread, span and trace ids, a column per field), ``stats()`` what was written,
    delivered, dropped (at once when overwritten) and pending, and
    ``set_sample_rate``/``enable``/``disable`` steer running kernels.  A thread keeps its
    ring until ``release_thread()``; threads beyond the rings lose their events (counted
    as ``no_ring``).  ``TraceCollector`` drains in the background.
    """

    #: a subclass's default event set (``Tracer.disabled()`` / ``attach`` use it)
    events = None

    def __init__(self, event_set, config: TracingConfig | None = None):
        config = checked_arguments(event_set, config, "Tracer")
        self.config = config
        self._bind(event_set, *self._new_region(event_set, config, config.path), primary=True)

    @staticmethod
    def _new_region(event_set, config, path):
        """Rings for ``config``, in a new file at ``path`` or in anonymous memory."""
        layout = event_set.layout
        thresholds = config.thresholds(layout)           # checks the type names
        n_types, n_rings, capacity = len(layout.types), config.max_threads, config.ring_capacity
        clock = ringbuf.CLOCK_TSC if tsc_is_reliable() else ringbuf.CLOCK_MONOTONIC
        desc = _description(layout, n_rings, capacity, clock)
        size = ringbuf.region_size(n_types, n_rings, capacity)
        if path:
            region = Region.create(path, KIND_TRACE, size, desc, CACHE_LINE)
        else:
            region = Region.anonymous(KIND_TRACE, size, desc, CACHE_LINE)
        tracer_id = int(np.random.SeedSequence().generate_state(1, dtype=np.uint64)[0]) | 1
        ringbuf.initialise(region.data.view(np.uint64), n_types, n_rings, capacity, clock,
                           thresholds, now_triple(), tracer_id)
        region.publish()
        return region, n_rings, capacity, clock

    _directory = None

    @classmethod
    def create_in(cls, event_set, directory=None, config: TracingConfig | None = None):
        """This process's tracer in a directory shared by many processes (default:
        ``$ENGRAM_NUMBA_TRACE_DIR``): a rings file named by the event set, pid and process
        start time, which ``engram-numba trace export --dir`` merges with the other
        processes' files in time order.  A forked child gets a file of its own.  See
        :mod:`.directory`."""
        import os
        from dataclasses import replace

        from .._process import new_rings_path
        if not (isinstance(event_set, type) and issubclass(event_set, EventSet)) \
                or event_set.layout is None:
            raise TypeError(f"Tracer.create_in takes an EventSet class with events, got "
                            f"{event_set!r}")
        config = TracingConfig() if config is None else config
        if not isinstance(config, TracingConfig):
            raise TypeError(f"config must be a TracingConfig, got {config!r}")
        config.validate()
        config.thresholds(event_set.layout)          # bad type names: before any file exists
        path = new_rings_path(directory, event_set.layout.name)
        obj = cls(event_set, replace(config, path=path))
        obj._directory = os.path.dirname(path)
        obj._track()
        return obj

    def _bind(self, event_set, region, n_rings, capacity, clock, primary):
        self.event_set = event_set
        self.layout = event_set.layout
        self._region = region
        self._base = region.address if region is not None else None
        self._wbase = self._base if region is not None and region.writable else None
        self._noted = threading.local()            # set in the threads note_thread saw
        # per ring, the finished owners' (since, until, OS thread id): who wrote which
        # positions before the ring's last two owners (see _release_finished_thread)
        self._finished = {}
        self._finished_lock = threading.Lock()
        self.n_rings, self.capacity, self.clock = n_rings, capacity, clock
        self._n_types = len(self.layout.types)
        self._th_end = ringbuf.ring_headers_offset(self._n_types)
        #: the word index of each ring's header in the region's words
        self._heads = np.array([ringbuf.header_word(0, r, self._n_types)
                                for r in range(n_rings)], dtype=np.int64)
        self._slots = ringbuf.slots_offset(self._n_types, n_rings)
        self._primary = primary
        self._lock = threading.Lock()
        self._context = SpanContext(n_rings)      # the drains' spans open on each ring
        self._callers = {}
        self._handles = {}
        self._parents = []                         # contexts of the active parent() blocks
        self._nbtype = _njit.TracerType(event_set, self.layout, region is not None, n_rings,
                                        capacity, clock)
        if region is not None and region.path is None:
            self._track()
        if self._wbase is not None and self.layout.has_spans:
            from . import _prange
            _prange.register(self, region.data.view(np.uint64), self._th_end, n_rings,
                             ringbuf.contexts_offset(self._n_types, n_rings, capacity),
                             self._slots, capacity, clock,
                             any(t.kind is EVENT for t in self.layout.types))

    def _after_fork_in_child(self):
        # the child's anonymous rings are a private copy: the parent's events and its
        # threads' claims stay with the parent; the child starts with empty rings
        if self._base is not None and self._directory is not None:
            # directory mode: the child records into a rings file of its own
            from .._process import new_rings_path
            old = self._region
            path = new_rings_path(self._directory, self.event_set.layout.name)
            self._bind(self.event_set, *self._new_region(self.event_set, self.config, path),
                       primary=True)
            old.close()
            return
        if self._base is not None:
            ringbuf.reset_rings(self._region.data.view(np.uint64), self._n_types, self.n_rings)
            self._context = SpanContext(self.n_rings)
            self._finished = {}

    @classmethod
    def cuda(cls, event_set, config: TracingConfig | None = None):
        """A tracer whose rings live in device memory, for numba CUDA kernels (extra
        ``[cuda]``; events, spans per warp, types switched on and off, no sampling):
        ``drain()`` gives this tracer's event array.  See :mod:`engram_numba.gpu`."""
        from .. import _kernel_arg
        return _kernel_arg.device("cuda-tracer")(event_set, config)

    @classmethod
    def disabled(cls, event_set=None) -> "Tracer":
        """A tracer of ``event_set`` that records nothing, owns no memory and compiles to no
        code in kernels."""
        event_set = event_set if event_set is not None else getattr(cls, "events", None)
        if not (isinstance(event_set, type) and issubclass(event_set, EventSet)) \
                or event_set.layout is None:
            raise TypeError(f"Tracer.disabled takes an EventSet class, got {event_set!r}")
        obj = cls.__new__(cls)
        obj.config = TracingConfig.disabled()
        obj._bind(event_set, None, 0, 0, 0, primary=False)
        return obj

    @classmethod
    def attach(cls, path, *, writable: bool = False, event_set=None) -> "Tracer":
        """Attach to a file-backed tracer of another process.

        The event set is rebuilt from the file (its enums too), or, with
        ``event_set=``, checked to be exactly that class's declaration.  Reading
        never disturbs the owner: :meth:`read` and :meth:`follow` keep their own
        cursors.  ``writable=True`` allows recording and changing the running
        program's configuration (:meth:`set_sample_rate` ...).
        """
        event_set = event_set if event_set is not None else getattr(cls, "events", None)
        region = Region.attach(path, KIND_TRACE, writable=writable)
        try:
            d = json.loads(region.description)
            if not isinstance(d, dict) or d.get("format") != "engram-numba.trace-rings" or \
                    d.get("layout_version") != LAYOUT_VERSION or d.get("event_size") != SLOT_SIZE:
                raise RegionError(f"{path}: not a trace-ring layout this version reads")
            n_rings, capacity, clock = (as_integer(d[k], k) for k in ("rings", "capacity", "clock"))
            if not (1 <= n_rings <= MAX_THREADS and 1 <= capacity <= MAX_RING) \
                    or capacity & (capacity - 1) or clock not in (0, 1):
                raise RegionError(f"{path}: corrupt trace-ring layout")
            stored = json.dumps(d["events"], sort_keys=True, separators=(",", ":"))
            if event_set is not None:
                if event_set.layout is None or event_set.layout.description != stored:
                    raise RegionError(f"{path}: holds the events of set "
                                      f"{d['events'].get('name')!r}, declared differently from "
                                      f"{event_set.__name__}")
            else:
                event_set = EventSet.from_description(stored)
            need = round_up(ringbuf.region_size(len(event_set.layout.types), n_rings, capacity),
                            region.alignment)
            if region.size != need:
                raise RegionError(f"{path}: data area is {region.size} bytes, the ring layout "
                                  f"needs {need}; the file is damaged")
        except (KeyError, TypeError, ValueError, AttributeError, RecursionError) as exc:
            region.close()
            if isinstance(exc, RegionError):
                raise
            raise RegionError(f"{path}: unreadable trace-ring layout ({type(exc).__name__}: "
                              f"{str(exc)[:200]})") from None
        obj = cls.__new__(cls)
        obj._bind(event_set, region, n_rings, capacity, clock, primary=False)
        obj.config = None
        return obj

    # -- declared types and kernel methods, from Python ----------------------------------

    def __getattr__(self, name):
        if name.startswith("_"):
            raise AttributeError(name)
        layout = self.__dict__.get("layout")
        if layout is not None:
            t = layout.by_name.get(name)
            if t is not None:
                handle = self._handles.get(name)
                if handle is None:
                    handle = self._handles[name] = _PyHandle(self, t)
                return handle
            km = self.event_set._kernel_methods.get(name)
            if km is not None:
                return km.__get__(self)
        raise AttributeError(f"{type(self).__name__} of {getattr(self, 'event_set', None)} has no "
                             f"attribute {name!r}; event types: "
                             f"{list(layout.by_name) if layout else []}")

    _notes_threads = True

    @property
    def _kernel_pid(self) -> int:
        # read by every kernel call that passes the tracer from Python, in the calling thread
        if self._wbase is not None and not hasattr(self._noted, "it"):
            note_thread(self)
        return current_pid()

    def _release_finished_thread(self, tid: int) -> int:
        """Give back the ring of thread ``tid`` (a pthread id of this process), which
        records no more, and remember which positions it wrote, so that drains name its
        events after later owners took the ring.  Returns the ring, or -1."""
        if self._wbase is None:
            return -1
        words = self._words()
        pid = current_pid()
        heads = self._heads
        mine = np.flatnonzero((words[heads + ringbuf.R_OWNER // 8] == np.uint64(tid))
                              & (words[heads + ringbuf.R_OWNER // 8 + 1] == np.uint64(pid)))
        released = -1
        for r in mine.tolist():          # (a thread can hold two: see .._claim.claim)
            h = int(heads[r])
            os_tid, since, until = (int(words[h + off // 8]) for off in (
                ringbuf.R_OS_TID, ringbuf.R_SINCE, ringbuf.R_WRITE))
            with self._finished_lock:
                if until > since:
                    kept = [e for e in self._finished.get(r, ())
                            if e[1] > until - self.capacity]
                    self._finished[r] = kept[-self.capacity:] + [(since, until, os_tid)]
                got = int(ringbuf.release_ring_of(self._wbase, pid, self._th_end,
                                                  self.n_rings, np.uint64(tid)))
            released = got if released < 0 else released
        return released

    def release_thread(self) -> int:
        """Give the calling thread's ring back, for a thread that is about to finish.

        Call it (from Python, or as ``tracer.release_thread()`` in a kernel) at
        the end of a short-lived thread so that the next thread can have the
        ring; the ring's unread events stay readable.  The thread must not
        record afterwards.  Returns the ring released, or -1.
        """
        if self._region is None:
            return -1
        self._require_writable()
        return self._release_finished_thread(int(_libc_pthread_self()))

    # -- configuration (takes effect in running kernels) ------------------------------------

    def _words(self) -> np.ndarray:
        self._require_open()
        return self._region.data.view(np.uint64)

    def _set_threshold(self, t, value: int) -> None:
        if self._region is None:
            return
        self._require_writable()
        from .._atomics import atomic_store
        atomic_store(self._words(), ringbuf.TH_OFF // 8 + t.index, np.uint64(value))

    def thresholds(self) -> dict:
        """The threshold word of every type, by name (see :mod:`.config`)."""
        if self._region is None:
            return {t.name: 0 for t in self.layout.types}
        words = self._words()
        return {t.name: int(words[ringbuf.TH_OFF // 8 + t.index]) for t in self.layout.types}

    def sample_rates(self) -> dict:
        """Effective rate per type name (0.0 when off)."""
        return {name: (1.0 if th == ALWAYS else th / 2.0 ** 64)
                for name, th in self.thresholds().items()}

    def set_sample_rate(self, event_type, rate) -> None:
        """Change a type's sample rate (and enable it); running kernels see it at once."""
        t = self.layout.type_of(event_type)
        r = as_rate(rate, "sample_rate")
        if self.config is not None:
            self.config.sample_rates[t.name] = r
            if self.config.enabled_events is not None:
                self.config.enabled_events.add(t.name)
        self._set_threshold(t, threshold(r))

    def enable(self, event_type) -> None:
        """Switch a type on at its configured rate (1.0 when attached)."""
        t = self.layout.type_of(event_type)
        rate = 1.0
        if self.config is not None:
            if self.config.enabled_events is not None:
                self.config.enabled_events.add(t.name)
            rate = self.config.resolve(self.layout)[t.name] or 1.0
        self._set_threshold(t, threshold(rate))

    def disable(self, event_type) -> None:
        """Switch a type off: its records cost one load and a branch."""
        t = self.layout.type_of(event_type)
        if self.config is not None:
            if self.config.enabled_events is None:
                self.config.enabled_events = {x.name for x in self.layout.types}
            self.config.enabled_events.discard(t.name)
        self._set_threshold(t, 0)

    # -- reading ----------------------------------------------------------------------------

    def _empty(self) -> np.ndarray:
        return np.empty(0, dtype=self.layout.dtype)

    def _positions(self) -> np.ndarray:
        return ringbuf.ring_positions(self._kernel_address, self._th_end, self.n_rings)

    def _collect(self, starts) -> tuple:
        """Events from per-ring start positions to the current write indexes.

        Returns (raw slots, write indexes, dropped per ring), the slots ring by ring in
        the order they were written.
        """
        base = self._kernel_address
        writes = self._positions()[:, 0].astype(np.int64)
        starts = np.asarray(starts, dtype=np.int64)
        lapped = np.maximum(writes - self.capacity - starts, 0)
        begin = starts + lapped
        pending = int(np.maximum(writes - begin, 0).sum())
        out = np.empty(pending * _WORDS, dtype=np.uint64)
        dropped = lapped.copy()
        k = 0
        for r in np.flatnonzero(writes > begin):
            k, lost = ringbuf.collect_ring(base, self._slots, self.capacity, int(r), int(begin[r]),
                                     int(writes[r]), out, k)
            dropped[r] += lost
        events = out[:k * _WORDS].view(self.layout.slot_dtype)
        return events, writes, dropped

    def _threads(self) -> tuple:
        """Per ring: (OS thread id of its producer, write index when it claimed the ring,
        OS thread id of the producer before)."""
        words = self._words()
        heads = self._heads
        return (words[heads + ringbuf.R_OS_TID // 8], words[heads + ringbuf.R_SINCE // 8],
                words[heads + ringbuf.R_PREV_OS_TID // 8])

    def _finish(self, raw, context) -> np.ndarray:
        """Drained events from raw slots: unix-ns timestamps, the recording thread's OS id,
        each event's span and trace (``context``: the spans open before), sorted by time."""
        contexts = None
        if raw.size and self.layout.has_spans:
            kind = raw["flags"] & 3
            if (kind == FLAG_CONTEXT).any():      # context records: applied, never returned
                contexts = raw[kind == FLAG_CONTEXT]
                raw = raw[kind != FLAG_CONTEXT]
        events = self.layout.records(raw)
        if events.size:
            events["timestamp"] = self._to_unix_ns(raw["timestamp"])
            tid, since, prev = self._threads()
            ring = events["ring"].astype(np.int64)
            thread = np.where(events["sequence"] >= since[ring], tid[ring], prev[ring])
            with self._finished_lock:
                finished = {r: list(e) for r, e in self._finished.items()}
            for r, entries in finished.items():      # owners before the last two
                on = ring == r
                if on.any():
                    seq = events["sequence"]
                    for first, end, os_tid in entries:
                        thread[on & (seq >= first) & (seq < end)] = os_tid
            events["thread"] = thread
        if events.size or contexts is not None:
            context.annotate(events, self.layout, contexts)
        if events.size:
            order = np.argsort(events["timestamp"], kind="stable")
            # gathered as plain bytes: numpy copies structured records field by field
            whole = np.dtype((np.void, events.dtype.itemsize))
            events = events.view(whole)[order].view(events.dtype)
        return events

    def _to_unix_ns(self, ticks: np.ndarray) -> np.ndarray:
        anchor = Anchor.monotonic() if self.clock == ringbuf.CLOCK_MONOTONIC else self._anchor()
        return anchor.to_unix_ns(ticks)

    def _anchor(self) -> Anchor:
        """The TSC rate the owner last published (else measured since creation), anchored now.

        Every process converts with the same rate, and each anchors at its own
        present wall clock, so timestamps agree with ``time.time_ns()`` even
        after the wall clock was stepped.
        """
        words = self._words()
        for _ in range(100):
            version = int(words[ringbuf.ANCHOR_VER_OFF // 8])
            if version == 0:
                break
            if version & 1:
                continue
            anchor = Anchor(*(int(words[off // 8]) for off in (
                ringbuf.ANCHOR_TSC_OFF, ringbuf.ANCHOR_UNIX_OFF, ringbuf.ANCHOR_MULT_OFF,
                ringbuf.ANCHOR_SHIFT_OFF)))
            if int(words[ringbuf.ANCHOR_VER_OFF // 8]) == version and 0 < anchor.mult < 1 << 32 \
                    and anchor.shift <= 32:
                return anchor.at_now()
        return _baseline(words)

    def _publish_anchor(self) -> None:
        """Owner only: the rate over the whole baseline since creation, for every reader."""
        if self.clock != ringbuf.CLOCK_TSC or not self._region.writable:
            return
        words = self._words()
        anchor = _baseline(words)
        from .._atomics import atomic_store
        version = int(words[ringbuf.ANCHOR_VER_OFF // 8])
        atomic_store(words, ringbuf.ANCHOR_VER_OFF // 8, np.uint64(version + 1))
        for off, value in ((ringbuf.ANCHOR_TSC_OFF, anchor.ticks),
                           (ringbuf.ANCHOR_UNIX_OFF, anchor.unix),
                           (ringbuf.ANCHOR_MULT_OFF, anchor.mult),
                           (ringbuf.ANCHOR_SHIFT_OFF, anchor.shift)):
            words[off // 8] = value
        atomic_store(words, ringbuf.ANCHOR_VER_OFF // 8, np.uint64(version + 2))

    def drain(self) -> np.ndarray:
        """Events recorded since the last drain, merged across rings, oldest first.

        The records have the set's dtype (:attr:`EventSet.dtype`): ``timestamp`` in
        unix ns, ``thread`` (the OS thread id), ``ring``, ``sequence`` (the event's
        position in its ring), ``span_id`` and ``trace_id`` of the span it happened in,
        and every field in a column of its own; ``np.save`` keeps them.  Only the
        tracer's owner drains; attached readers use :meth:`read` / :meth:`follow`.
        """
        if self._region is None:
            return self._empty()
        self._require_open()
        if not self._primary:
            raise RuntimeError("only the tracer's owner drains; use read() or follow()")
        with self._lock:
            self._publish_anchor()
            words = self._words()
            heads = self._heads.tolist()
            starts = [int(words[h + ringbuf.R_READ // 8]) for h in heads]
            raw, writes, dropped = self._collect(starts)
            got = np.bincount(raw["ring"], minlength=self.n_rings)
            ringbuf.finish_drain(self._kernel_address, self._th_end, self.n_rings,
                           np.asarray(starts, dtype=np.int64), writes, got.astype(np.int64),
                           dropped.astype(np.int64))
            return self._finish(raw, self._context)

    def read(self) -> np.ndarray:
        """Every event still held in the rings (oldest first), without consuming them."""
        if self._region is None:
            return self._empty()
        self._require_open()
        writes = self._positions()[:, 0].astype(np.int64)
        raw, _, _ = self._collect(np.maximum(writes - self.capacity, 0))
        return self._finish(raw, SpanContext(self.n_rings))

    def follow(self, interval: float = 0.2, stop=None):
        """Yield batches of new events as they are written (a private cursor), until ``stop()``."""
        if self._region is None:
            return
        self._require_open()
        cursors = self._positions()[:, 0].astype(np.int64)
        context = SpanContext(self.n_rings)
        while stop is None or not stop():
            raw, writes, _ = self._collect(cursors)
            cursors = writes
            if raw.size:
                yield self._finish(raw, context)
            else:
                time.sleep(interval)

    def open_spans(self) -> list:
        """Spans begun and not ended yet: ``{"ring", "depth", "span_id", "type", "recorded"}``."""
        if self._region is None:
            return []
        spans = ringbuf.open_spans(self._words(), self._n_types, self.n_rings)
        return [{"ring": r, "depth": d, "span_id": i,
                 "type": self.layout.types[t].name if t < self._n_types else "unknown",
                 "recorded": rec} for r, d, i, t, rec in spans]

    # -- trace context ----------------------------------------------------------------------

    def parent(self, ctx=CURRENT) -> "_ParentBlock":
        """``with tracer.parent(ctx):`` makes every span begun while the block is active,
        on any thread, that has no open span on its own thread, a child of ``ctx`` in
        ``ctx``'s trace (its OTLP trace id and parent span id).

        ``ctx``: nothing (the current OpenTelemetry span; needs ``opentelemetry-api``),
        an ``opentelemetry.trace.SpanContext``, a W3C ``traceparent`` string, or what
        :meth:`context` returns (None, when no span was open, changes nothing).  A bad
        context raises ``ValueError`` here, before anything is recorded.  Blocks nest;
        when several are active (on several threads), the latest entered applies.
        """
        return _ParentBlock(self, None if ctx is None else resolve(ctx))

    def context(self) -> TraceContext | None:
        """The calling thread's innermost open span as a :class:`TraceContext` (its trace
        id and span id), for ``tracer.parent(...)`` on another thread or process
        (``.traceparent`` is its W3C header); None when no span is open on the thread."""
        if self._region is None:
            return None
        ring = int(ringbuf.py_thread_ring(self._kernel_address, current_pid(), self._th_end,
                                          self.n_rings))
        if ring < 0:
            return None
        words = self._words()
        span, root, root_parent = ringbuf.thread_context(words, self._n_types, ring)
        if span == 0:
            return None
        trace = self.external_traces().get(root_parent) if root_parent else None
        if trace is None:
            trace = self.tracer_id << 64 | (root_parent or root)
        return TraceContext(trace, span)

    def external_traces(self) -> dict:
        """``{span id: 128-bit trace id}`` of the recent explicit parents (:meth:`parent`):
        the trace of a span whose root has such a parent (the last
        ``N_CONTEXTS`` contexts entered are kept)."""
        if self._region is None:
            return {}
        return ringbuf.external_traces(self._words(), self._n_types, self.n_rings,
                                       self.capacity)

    def trace_id_of(self, root: int) -> int:
        """The 128-bit trace id of the trace whose root key (an event's ``trace_id``
        column, a closed span's ``root_id``) is ``root``."""
        return self.external_traces().get(int(root), self.tracer_id << 64 | int(root))

    def _set_parent(self, ctx, entering: bool) -> None:
        self._require_writable()
        from .._atomics import atomic_add, atomic_store
        words = self._words()
        with self._lock:
            if entering:
                # (parallel regions write the table too: see ._prange)
                n = int(atomic_add(words, ringbuf.EXT_COUNT_OFF // 8, np.uint64(1)))
                at = (ringbuf.contexts_offset(self._n_types, self.n_rings, self.capacity)
                      + (n % ringbuf.N_CONTEXTS) * ringbuf.CONTEXT_SIZE) // 8
                words[at] = 0                     # (readers skip an entry being written)
                words[at + 1] = ctx.trace_id >> 64
                words[at + 2] = ctx.trace_id & (1 << 64) - 1
                atomic_store(words, at, np.uint64(ctx.span_id))
                self._parents.append(ctx)
            else:
                for k in range(len(self._parents) - 1, -1, -1):
                    if self._parents[k] is ctx:
                        del self._parents[k]
                        break
            active = self._parents[-1].span_id if self._parents else 0
            atomic_store(words, ringbuf.EXT_PARENT_OFF // 8, np.uint64(active))

    @property
    def tracer_id(self) -> int:
        """A random 64-bit id of this tracer (half of its OTLP trace ids)."""
        return 0 if self._region is None else int(self._words()[ringbuf.TRACER_ID_OFF // 8])

    def stats(self) -> dict:
        """Per ring and in total: written, delivered, dropped, pending, utilization (%).

        ``written == delivered + dropped + pending`` for every ring at any time:
        an event overwritten before it was read counts as dropped the moment it is
        overwritten, not at the next drain (``overwritten_unread`` says how many of
        the dropped are such events not yet passed by a drain), and ``pending`` is
        at most the ring's capacity.  ``peak_utilization`` is the fullest a drain
        found a ring (100 once events were overwritten).  These figures count ring
        records: the events, and ``contexts``, the context records that workers of a
        parallel region write when its launcher had a span open and they emit an
        instant event with no span open (two per chunk, so that readers give those
        events that span; drains never return them).  ``no_ring`` counts events
        dropped because every ring belonged to another thread, ``invalid`` those
        with an out-of-range argument or a span end without its begin.  ``lost`` is
        the sum of dropped, no_ring and invalid.  Each ring has the OS ``thread`` id
        of its current producer.
        """
        empty = {"written": 0, "delivered": 0, "dropped": 0, "overwritten_unread": 0,
                 "pending": 0, "contexts": 0, "utilization": 0.0, "peak_utilization": 0.0}
        if self._region is None:
            return {"rings": [], "total": dict(empty), "no_ring": 0, "invalid": 0, "lost": 0,
                    "capacity": 0, "memory_bytes": 0}
        with self._lock:
            words = self._words()
            rings = ringbuf.ring_stats(words, self._n_types, self.n_rings, self.capacity)
            no_ring = int(words[ringbuf.NO_RING_OFF // 8])
            invalid = int(words[ringbuf.INVALID_OFF // 8])
        total = dict(empty)
        for ring in rings:
            for k in ("written", "delivered", "dropped", "overwritten_unread", "pending",
                      "contexts"):
                total[k] += ring[k]
            for k in ("utilization", "peak_utilization"):
                total[k] = max(total[k], ring[k])
        return {"rings": rings, "total": total, "no_ring": no_ring, "invalid": invalid,
                "lost": total["dropped"] + no_ring + invalid, "capacity": self.capacity,
                "memory_bytes": self._region.size}

    def fill(self) -> float:
        """How full the fullest ring is, as a fraction of its capacity: events written and
        not yet drained over the capacity (above 1.0, the excess was overwritten).  Cheap
        (a compiled pass over the ring headers): a collector polls it to drain early."""
        if self._region is None or self._base is None:
            return 0.0
        pos = self._positions().astype(np.int64)
        return float(np.max(pos[:, 0] - pos[:, 1], initial=0)) / self.capacity

    def _repr_html_(self) -> str:
        from ._html import tracer_html
        return tracer_html(self)

    def __repr__(self) -> str:
        name = f"{type(self).__name__}[{self.event_set.set_name}]"
        if self._region is None:
            return f"<{name} disabled>"
        where = self._region.path or "anonymous"
        return f"<{name} {self.n_rings} rings x {self.capacity} events, {where}>"


class _ParentBlock:
    """``with tracer.parent(ctx):`` (see :meth:`Tracer.parent`)."""

    def __init__(self, tracer, ctx):
        self._tracer, self.context = tracer, ctx

    def __enter__(self):
        if self.context is not None and self._tracer._region is not None:
            self._tracer._set_parent(self.context, True)
        return self.context

    def __exit__(self, *exc):
        if self.context is not None and self._tracer._region is not None:
            self._tracer._set_parent(self.context, False)
        return False


class _PyHandle:
    """One declared type of a tracer, called from Python (validated, then compiled code)."""

    def __init__(self, tracer, t):
        self._tracer = tracer
        self._type = t
        self._fields = list(t.fields.items())
        self._nbtype = tracer._nbtype.handle_types[t.name]
        self._calls = {}

    def _values(self, method, args) -> list:
        t = self._type
        if len(args) != len(self._fields):
            raise TypeError(f"{t.name}.{method}: takes {len(self._fields)} field(s) "
                            f"{[n for n, _ in self._fields]}, got {len(args)}")
        out = []
        for (name, ft), value in zip(self._fields, args):
            v = ft.python(value, f"{t.name}.{method}: {name}")
            out.append(np.uint64(v) if isinstance(v, int) and v >= 1 << 63 else v)
        return out

    def _call(self, method, values):
        caller = self._calls.get(method)
        if caller is None:
            caller = self._calls[method] = _handle_caller(self._nbtype, method)
        tracer = self._tracer
        return caller(tracer._address(), tracer._kernel_pid, *values)

    def emit(self, *args) -> bool:
        if self._type.kind is not EVENT:
            raise TypeError(f"{self._type.name} is a span: use begin() and end()")
        values = self._values("emit", args)
        return self._tracer._region is not None and bool(self._call("emit", values))

    def begin(self, *args) -> int:
        if self._type.kind is not SPAN:
            raise TypeError(f"{self._type.name} is an event: use emit()")
        values = self._values("begin", args)
        return 0 if self._tracer._region is None else int(self._call("begin", values))

    def end(self) -> bool:
        if self._type.kind is not SPAN:
            raise TypeError(f"{self._type.name} is an event: use emit()")
        return self._tracer._region is not None and bool(self._call("end", []))

    def __repr__(self):
        return f"<{self._type.kind} {self._type.name} of {self._tracer!r}>"


_handle_callers: dict = {}


def _handle_caller(nbtype, method):
    key = (nbtype, method)
    fn = _handle_callers.get(key)
    if fn is None:
        make = object_from_address(nbtype)
        if method == "emit":
            @njit(nogil=True)
            def fn(base, pid, *args):
                return make(base, pid).emit(*args)
        elif method == "begin":
            @njit(nogil=True)
            def fn(base, pid, *args):
                return make(base, pid).begin(*args)
        else:
            @njit(nogil=True)
            def fn(base, pid):
                return make(base, pid).end()
        _handle_callers[key] = fn
    return fn


def _reserve_tracer_names() -> None:
    """Reserve every name of the Tracer class and of a constructed tracer's attributes,
    derived from both so that the list cannot drift from the class."""
    class _Probe(EventSet, name="probe"):
        probe_event_type = Event()

    # an enabled tracer binds the same attributes (``_bind``); a test checks both
    names = set(dir(Tracer)) | set(vars(Tracer.disabled(_Probe)))
    reserve_names(names)


_reserve_tracer_names()
