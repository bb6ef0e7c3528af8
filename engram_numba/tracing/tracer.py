"""CognitiveTracer: bounded, lock-free event tracing from kernels (and Python).

::

    tracer = CognitiveTracer(TracingConfig.development())
    kernel(metrics, tracer, ...)          # inside: tracer.trace_priming(t, s, src, dst)
    events = tracer.drain()               # time-ordered structured array (EVENT_DTYPE)
    tracer.stats()                        # written / delivered / dropped per ring

Every recording thread gets its own ring (see :mod:`._ring`) and keeps it for
the tracer's lifetime, or until it calls :meth:`CognitiveTracer.release_thread`;
when more threads record than there are rings, the extra events are dropped and
counted (``stats()["no_ring"]``), never written into another thread's ring.
Record from long-lived threads (a thread pool, numba's own workers), or release
the ring at the end of a short-lived thread.  Memory is fixed at creation.
"""

from __future__ import annotations

import json
import threading
import time

import numpy as np
from numba import njit

from .._kernel_arg import KernelArgument
from .._region import CACHE_LINE, KIND_TRACE, Region, RegionError, round_up
from .._values import as_enum, as_integer, as_number, as_rate
from ..clock import Anchor, now_triple, tsc_is_reliable
from . import _njit
from . import _ring as R
from .config import ALWAYS, MAX_RING, MAX_THREADS, TracingConfig, threshold
from .events import EVENT_DTYPE, EVENT_SIZE, EventType

__all__ = ["CognitiveTracer"]

LAYOUT_VERSION = 2
_U64_WORDS = EVENT_SIZE // 8


@njit(nogil=True, cache=True)
def _py_priming(tr, a, b, c, d):
    return tr.trace_priming(a, b, c, d)


@njit(nogil=True, cache=True)
def _py_interference(tr, a, b, c, d):
    return tr.trace_interference(a, b, c, d)


@njit(nogil=True, cache=True)
def _py_reconsolidation(tr, a, b, c, d):
    return tr.trace_reconsolidation(a, b, c, d)


@njit(nogil=True, cache=True)
def _py_false_memory(tr, a, b, c):
    return tr.trace_false_memory(a, b, c)


def _baseline(words) -> Anchor:
    """An anchor at now, with the TSC rate measured since the tracer was created.

    A baseline under a millisecond is too short to measure a rate; it is
    stretched by waiting 2 ms.  A header whose reference is unusable (a damaged
    file) falls back to a rate measured here and now.
    """
    tsc_ref, mono_ref = int(words[R.TSC_REF_OFF // 8]), int(words[R.MONO_REF_OFF // 8])
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


def _description(n_rings, capacity, clock) -> str:
    return json.dumps({"format": "engram-numba.trace-rings", "layout_version": LAYOUT_VERSION,
                       "rings": n_rings, "capacity": capacity, "clock": clock,
                       "event_size": EVENT_SIZE}, sort_keys=True, separators=(",", ":"))


def _uint(value, name, bits) -> int:
    return as_integer(value, name, 0, (1 << bits) - 1)


_float = as_number


class CognitiveTracer(KernelArgument):
    """Per-thread rings of 64-byte cognitive events; see the module docstring."""

    def __init__(self, config: TracingConfig | None = None):
        config = TracingConfig.development() if config is None else config
        config.validate()
        n_rings, capacity = config.max_threads, config.ring_capacity
        clock = R.CLOCK_TSC if tsc_is_reliable() else R.CLOCK_MONOTONIC
        desc = _description(n_rings, capacity, clock)
        size = R.region_size(n_rings, capacity)
        if config.path:
            region = Region.create(config.path, KIND_TRACE, size, desc, CACHE_LINE)
        else:
            region = Region.anonymous(KIND_TRACE, size, desc, CACHE_LINE)
        words = region.data.view(np.uint64)
        words[R.CLOCK_OFF // 8] = clock
        words[R.CAP_OFF // 8] = capacity
        words[R.RINGS_OFF // 8] = n_rings
        tsc, mono, unix = now_triple()
        words[R.TSC_REF_OFF // 8] = tsc
        words[R.MONO_REF_OFF // 8] = mono
        words[R.UNIX_REF_OFF // 8] = unix
        seed = np.random.SeedSequence().generate_state(n_rings, dtype=np.uint64) | np.uint64(1)
        for r in range(n_rings):
            words[(R.RING_HEADERS + R.RING_HEADER_SIZE * r + R.R_RNG) // 8] = seed[r]
        words[:4] = config.thresholds()
        region.publish()
        self.config = config
        self._bind(region, n_rings, capacity, clock, primary=True)

    def _bind(self, region, n_rings, capacity, clock, primary):
        self._region = region
        self._base = region.address if region is not None else None
        self.n_rings, self.capacity, self.clock = n_rings, capacity, clock
        self._primary = primary
        self._lock = threading.Lock()
        self._nbtype = _njit.TracerType(region is not None, n_rings, capacity, clock)
        if region is not None and region.path is None:
            self._track()

    def _after_fork_in_child(self):
        # the child's anonymous rings are a private copy: the parent's events and its
        # threads' claims stay with the parent; the child starts with empty rings
        if self._base is None:
            return
        words = self._region.data.view(np.uint64)
        for r in range(self.n_rings):
            h = (R.RING_HEADERS + R.RING_HEADER_SIZE * r) // 8
            for off in (R.R_OWNER, R.R_OWNER + 8, R.R_WRITE, R.R_READ, R.R_DELIVERED, R.R_DROPPED):
                words[h + off // 8] = 0
        words[R.NO_RING_OFF // 8] = 0
        words[R.INVALID_OFF // 8] = 0

    @classmethod
    def disabled(cls) -> "CognitiveTracer":
        """A tracer that records nothing, owns no memory and compiles to no code in kernels."""
        obj = cls.__new__(cls)
        obj.config = TracingConfig.disabled()
        obj._bind(None, 0, 0, 0, primary=False)
        return obj

    @classmethod
    def attach(cls, path, *, writable: bool = False) -> "CognitiveTracer":
        """Attach to a file-backed tracer of another process.

        Reading never disturbs the owner: :meth:`read` and :meth:`follow` keep
        their own cursors.  ``writable=True`` allows changing the running
        program's configuration (:meth:`set_sample_rate` ...).
        """
        region = Region.attach(path, KIND_TRACE, writable=writable)
        try:
            d = json.loads(region.description)
            if not isinstance(d, dict) or d.get("format") != "engram-numba.trace-rings" or \
                    d.get("layout_version") != LAYOUT_VERSION or d.get("event_size") != EVENT_SIZE:
                raise RegionError(f"{path}: not a trace-ring layout this version reads")
            n_rings, capacity, clock = (as_integer(d[k], k) for k in ("rings", "capacity", "clock"))
            if not (1 <= n_rings <= MAX_THREADS and 1 <= capacity <= MAX_RING) \
                    or capacity & (capacity - 1) or clock not in (0, 1):
                raise RegionError(f"{path}: corrupt trace-ring layout {d}")
            need = round_up(R.region_size(n_rings, capacity), region.alignment)
            if region.size != need:
                raise RegionError(f"{path}: data area is {region.size} bytes, the ring layout "
                                  f"needs {need}; the file is damaged")
        except (KeyError, TypeError, ValueError) as exc:
            region.close()
            if isinstance(exc, RegionError):
                raise
            raise RegionError(f"{path}: unreadable trace-ring layout ({exc})") from None
        obj = cls.__new__(cls)
        obj._bind(region, n_rings, capacity, clock, primary=False)
        obj.config = None
        return obj

    # -- recording from Python (validated; same compiled code as kernels) --------

    def _live(self) -> bool:
        if self._region is None:
            return False
        self._require_writable()
        return True

    def trace_priming(self, priming_type, strength, source_node, target_node) -> bool:
        from ..metrics.cognitive import PrimingType
        t = as_enum(PrimingType, priming_type, "priming_type")
        s = _float(strength, "strength")
        a, b = _uint(source_node, "source_node", 64), _uint(target_node, "target_node", 64)
        return self._live() and bool(_py_priming(self, int(t), s, np.uint64(a), np.uint64(b)))

    def trace_interference(self, interference_type, magnitude, target_episode_id,
                           competing_episode_count) -> bool:
        from ..metrics.cognitive import InterferenceType
        t = as_enum(InterferenceType, interference_type, "interference_type")
        m = _float(magnitude, "magnitude")
        e = _uint(target_episode_id, "target_episode_id", 64)
        n = _uint(competing_episode_count, "competing_episode_count", 32)
        return self._live() and bool(_py_interference(self, int(t), m, np.uint64(e), n))

    def trace_reconsolidation(self, episode_id, window_position, plasticity_factor,
                              modification_count) -> bool:
        e = _uint(episode_id, "episode_id", 64)
        w, p = _float(window_position, "window_position"), _float(plasticity_factor,
                                                                   "plasticity_factor")
        n = _uint(modification_count, "modification_count", 32)
        return self._live() and bool(_py_reconsolidation(self, np.uint64(e), w, p, n))

    def trace_false_memory(self, critical_lure_hash, source_list_size,
                           reconstruction_confidence) -> bool:
        h = _uint(critical_lure_hash, "critical_lure_hash", 64)
        n = _uint(source_list_size, "source_list_size", 32)
        c = _float(reconstruction_confidence, "reconstruction_confidence")
        return self._live() and bool(_py_false_memory(self, np.uint64(h), n, c))

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
        return int(R.py_release_ring(self._kernel_address, self._kernel_pid, self.n_rings))

    # -- configuration (takes effect in running kernels) ----------------------------

    def _words(self) -> np.ndarray:
        self._require_open()
        return self._region.data.view(np.uint64)

    def _set_threshold(self, event_type, value: int) -> None:
        if self._region is None:
            return
        self._require_writable()
        from .._atomics import atomic_store
        atomic_store(self._words(), R.TH_OFF // 8 + int(event_type), np.uint64(value))

    def thresholds(self) -> list:
        if self._region is None:
            return [0] * len(EventType)
        return [int(x) for x in self._words()[:len(EventType)]]

    def sample_rates(self) -> dict:
        """Effective rate per type (0.0 when disabled)."""
        return {t: (1.0 if th == ALWAYS else th / 2.0 ** 64)
                for t, th in zip(EventType, self.thresholds())}

    def set_sample_rate(self, event_type, rate: float) -> None:
        """Change a type's sample rate (and enable it); running kernels see it at once."""
        from .config import _event_type
        t = _event_type(event_type, "event_type")
        r = as_rate(rate, "sample_rate")
        if self.config is not None:
            self.config.sample_rates[t] = r
            self.config.enabled_events.add(t)
        self._set_threshold(t, threshold(r))

    def enable(self, event_type) -> None:
        from .config import _event_type
        t = _event_type(event_type, "event_type")
        rate = self.config.sample_rates[t] if self.config is not None else 1.0
        if self.config is not None:
            self.config.enabled_events.add(t)
        self._set_threshold(t, threshold(rate))

    def disable(self, event_type) -> None:
        from .config import _event_type
        t = _event_type(event_type, "event_type")
        if self.config is not None:
            self.config.enabled_events.discard(t)
        self._set_threshold(t, 0)

    # -- reading ----------------------------------------------------------------------

    def _positions(self) -> np.ndarray:
        return R.ring_positions(self._kernel_address, self.n_rings)

    def _collect(self, starts) -> tuple:
        """Events from per-ring start positions to the current write indexes.

        Returns (events, write indexes, dropped per ring); events are in raw form.
        """
        base = self._kernel_address
        writes = self._positions()[:, 0].astype(np.int64)
        starts = np.asarray(starts, dtype=np.int64)
        lapped = np.maximum(writes - self.capacity - starts, 0)
        begin = starts + lapped
        pending = int(np.maximum(writes - begin, 0).sum())
        out = np.empty(pending * _U64_WORDS, dtype=np.uint64)
        dropped = lapped.copy()
        k = 0
        for r in np.flatnonzero(writes > begin):
            k, lost = R.collect_ring(base, self.n_rings, self.capacity, int(r), int(begin[r]),
                                     int(writes[r]), out, k)
            dropped[r] += lost
        events = out[:k * _U64_WORDS].view(EVENT_DTYPE)
        return events, writes, dropped

    def _finish(self, events) -> np.ndarray:
        """Absolute unix-ns timestamps, sorted by time."""
        if events.size:
            events["timestamp"] = self._to_unix_ns(events["timestamp"])
            events = events[np.argsort(events["timestamp"], kind="stable")]
        return events

    def _to_unix_ns(self, ticks: np.ndarray) -> np.ndarray:
        anchor = Anchor.monotonic() if self.clock == R.CLOCK_MONOTONIC else self._anchor()
        return anchor.to_unix_ns(ticks)

    def _anchor(self) -> Anchor:
        """The TSC rate the owner last published (else measured since creation), anchored now.

        Every process converts with the same rate, and each anchors at its own
        present wall clock, so timestamps agree with ``time.time_ns()`` even
        after the wall clock was stepped.
        """
        words = self._words()
        for _ in range(100):
            version = int(words[R.ANCHOR_VER_OFF // 8])
            if version == 0:
                break
            if version & 1:
                continue
            anchor = Anchor(*(int(words[off // 8]) for off in (
                R.ANCHOR_TSC_OFF, R.ANCHOR_UNIX_OFF, R.ANCHOR_MULT_OFF, R.ANCHOR_SHIFT_OFF)))
            if int(words[R.ANCHOR_VER_OFF // 8]) == version and 0 < anchor.mult < 1 << 32 \
                    and anchor.shift <= 32:
                return anchor.at_now()
        return _baseline(words)

    def _publish_anchor(self) -> None:
        """Owner only: anchor at now, rate over the whole baseline since creation."""
        if self.clock != R.CLOCK_TSC or not self._region.writable:
            return
        words = self._words()
        anchor = _baseline(words)
        from .._atomics import atomic_store
        version = int(words[R.ANCHOR_VER_OFF // 8])
        atomic_store(words, R.ANCHOR_VER_OFF // 8, np.uint64(version + 1))
        for off, value in ((R.ANCHOR_TSC_OFF, anchor.ticks), (R.ANCHOR_UNIX_OFF, anchor.unix),
                           (R.ANCHOR_MULT_OFF, anchor.mult), (R.ANCHOR_SHIFT_OFF, anchor.shift)):
            words[off // 8] = value
        atomic_store(words, R.ANCHOR_VER_OFF // 8, np.uint64(version + 2))

    def drain(self) -> np.ndarray:
        """Events recorded since the last drain, merged across rings, oldest first.

        Fields are those of :data:`EVENT_DTYPE`; ``timestamp`` is unix ns and
        ``sequence`` the event's position in its ring.  Only the tracer's owner
        drains; attached readers use :meth:`read` / :meth:`follow`.
        """
        if self._region is None:
            return np.empty(0, dtype=EVENT_DTYPE)
        self._require_open()
        if not self._primary:
            raise RuntimeError("only the tracer's owner drains; use read() or follow()")
        with self._lock:
            self._publish_anchor()
            words = self._words()
            heads = [(R.RING_HEADERS + R.RING_HEADER_SIZE * r) // 8 for r in range(self.n_rings)]
            starts = [int(words[h + R.R_READ // 8]) for h in heads]
            events, writes, dropped = self._collect(starts)
            from .._atomics import atomic_store
            got_per_ring = np.bincount(events["thread"], minlength=self.n_rings)
            for r, h in enumerate(heads):
                if writes[r] == starts[r]:
                    continue
                got = int(got_per_ring[r])
                atomic_store(words, h + R.R_DELIVERED // 8,
                             np.uint64(int(words[h + R.R_DELIVERED // 8]) + got), "relaxed")
                atomic_store(words, h + R.R_DROPPED // 8,
                             np.uint64(int(words[h + R.R_DROPPED // 8]) + int(dropped[r])), "relaxed")
                atomic_store(words, h + R.R_READ // 8, np.uint64(int(writes[r])))
            return self._finish(events)

    def read(self) -> np.ndarray:
        """Every event still held in the rings (oldest first), without consuming them."""
        if self._region is None:
            return np.empty(0, dtype=EVENT_DTYPE)
        self._require_open()
        writes = self._positions()[:, 0].astype(np.int64)
        events, _, _ = self._collect(np.maximum(writes - self.capacity, 0))
        return self._finish(events)

    def follow(self, interval: float = 0.2, stop=None):
        """Yield batches of new events as they are written (a private cursor), until ``stop()``."""
        if self._region is None:
            return
        self._require_open()
        cursors = self._positions()[:, 0].astype(np.int64)
        while stop is None or not stop():
            events, writes, _ = self._collect(cursors)
            cursors = writes
            if events.size:
                yield self._finish(events)
            else:
                time.sleep(interval)

    def stats(self) -> dict:
        """Per ring and in total: written, delivered, dropped, pending, utilization (%).

        ``written == delivered + dropped + pending`` for every ring;
        ``no_ring`` counts events dropped because every ring belonged to another
        thread, ``invalid`` those with an out-of-range argument.
        """
        empty = {"written": 0, "delivered": 0, "dropped": 0, "pending": 0, "utilization": 0.0}
        if self._region is None:
            return {"rings": [], "total": dict(empty), "no_ring": 0, "invalid": 0,
                    "capacity": 0, "memory_bytes": 0}
        words = self._words()
        rings = []
        for r in range(self.n_rings):
            h = (R.RING_HEADERS + R.RING_HEADER_SIZE * r) // 8
            written = int(words[h + R.R_WRITE // 8])
            if not written and not words[h + R.R_OWNER // 8]:
                continue
            read = int(words[h + R.R_READ // 8])
            pending = written - read
            rings.append({"ring": r, "written": written,
                          "delivered": int(words[h + R.R_DELIVERED // 8]),
                          "dropped": int(words[h + R.R_DROPPED // 8]), "pending": pending,
                          "utilization": 100.0 * min(pending, self.capacity) / self.capacity})
        total = dict(empty)
        for ring in rings:
            for k in ("written", "delivered", "dropped", "pending"):
                total[k] += ring[k]
            total["utilization"] = max(total["utilization"], ring["utilization"])
        return {"rings": rings, "total": total, "no_ring": int(words[R.NO_RING_OFF // 8]),
                "invalid": int(words[R.INVALID_OFF // 8]), "capacity": self.capacity,
                "memory_bytes": self._region.size}

    def _repr_html_(self) -> str:
        from ..viz import tracer_html
        return tracer_html(self)

    def __repr__(self) -> str:
        if self._region is None:
            return "<CognitiveTracer disabled>"
        where = self._region.path or "anonymous"
        return f"<CognitiveTracer {self.n_rings} rings x {self.capacity} events, {where}>"

