"""Device tracers: ``Tracer.cuda(Events, config)``, rings in device memory.

Events and spans; types switched on and off (``enable``, ``disable``,
``enabled_events``) as on the CPU; sampling rates between 0 and 1 are the CPU
tracer's (a device tracer refuses them: it records a type always or never).

Device words (uint64)::

    0 .. R-1      write index of each ring (positions claimed so far)
    R             refused: an event or span argument out of its field's range, a span
                  end of another type than the innermost open span, a span deeper
                  than MAX_DEPTH (16)
    R + 1         span begins refused: their ring's span stack was another warp's
    S = round_up(R + 2, 8)
    S + (r * C + (p & (C - 1))) * 8     the 64-byte slot of ring r, position p
    K = S + R * C * 8
    K + r * 24    ring r's span stack (written by the lowest active lane of the warp
                  that holds it):
        +0   owner   (block << 6 | warp) + 1 of the warp whose spans are open, 0: free
        +1   count   spans begun on the ring (atomic add): their ids
        +2   depth   open spans
        +3   types   u8[16]: the open spans' types, bit 7 set when the begin was written
        +5   refused span begins refused on the ring whose ends have not come yet
        +8   ids     u64[16]: the open spans' ids, outermost first
    W = K + R * 24
    W + t         type t's switch: 0 off, else on (2**64 - 1, the CPU's threshold of
                  rate 1); read by every emit and begin with a plain load, so a switch
                  from Python reaches the kernels launched after it

A slot is the CPU tracer's (``EventSet.layout.slot_dtype``: timestamp at 8,
type, flags and ring at 16, the fields from 20; a span's id at 24 and its
parent's at 32) except its first word: the CPU's sequence becomes
``p & 0xFFFFFFFF | warp << 32 | block << 38`` (the recording warp's index in its
block and its block's linear index), written last, after a fence, so a drain
knows the position and who wrote it.

Recording (one ``emit``): the active lanes of a warp claim consecutive
positions of their warp's ring (``ring = (block * warps per block + warp) % R``)
with one ``atom.global.add`` from the lowest lane, which ``shfl.sync`` hands to
the others; each lane writes its slot with its own ``%globaltimer`` reading.

Spans are the warp's, as its events' "thread" is: the active lanes that call
``tr.<span>.begin(*fields)`` open one span together, and ``end()`` closes it.
The lowest active lane does the work (:func:`._ops.span_begin`,
:func:`._ops.span_end`) and writes the begin with its own fields; every lane
gets the id.  A span's id is ``(ring + 1) << 48 | n`` for the ring's n-th span
(an atomic count per ring: unique across the device without one hot word); its
parent is the warp's innermost open span, so spans nest as on the CPU, and the
drained begins and ends pair in :mod:`..tracing.spans` and export to OTLP
unchanged.  Why per warp and not per lane: a warp is the trace's thread (one
ring, one timeline), its lanes run in step (their spans would carry the same
times), a span costs two slots per warp instead of 64, and the stacks live in
the ring headers instead of per CUDA thread of the grid.  A ring's stack
belongs to one warp at a time: the first warp to begin a span on it takes it
(compare-and-swap) until its outermost span ends, and a span begun meanwhile by
another warp sharing the ring (more warps than rings) is refused and counted
(``stats()["span_refused"]``); an end with no span of its warp open changes
nothing, and is counted as invalid unless a refused begin on its ring is still
waiting for its end (the warps' ends are not told apart: the count is exact when
every refused begin is ended).  Give every warp a ring of its own (``max_threads`` at least the warps
launched) when spans matter: an instant event is in the span open on its ring.
Begin and end a span where the same lanes run (not in two diverging branches
of one warp at once: their spans would nest in the order the warp ran them).

Draining (:meth:`DeviceTracer.drain`, after the kernels it reads finished: it
synchronizes the device first): per ring, the positions since the last drain
that were overwritten (more than C behind the write index) or whose slot does
not hold their position are dropped, the rest delivered, so ``written =
delivered + dropped`` per ring exactly; the events come out as the CPU
tracer's drained array (timestamps in Unix ns, :mod:`._clock`; span and trace
ids filled in as the CPU's drain does), so every exporter reads them
unchanged.  A "thread" is a (block, warp) pair: ``thread = block << 16 |
warp``, named ``block B warp W`` (:func:`thread_name`).
"""

from __future__ import annotations

import threading

import numpy as np
from numba import cuda

from .._region import round_up
from ..tracing.kinds import SPAN
from ..tracing.spans import SpanContext
from ..tracing.schema import MAX_TYPES
from ._ops import ALWAYS, SIMULATOR, STACK_WORDS

POSITION_MASK = 0xFFFFFFFF
WARP_SHIFT, BLOCK_SHIFT = 32, 38


def thread_name(thread: int) -> str:
    """How a device event's ``thread`` reads: ``block B warp W``."""
    return f"block {int(thread) >> 16} warp {int(thread) & 0xFFFF}"


def geometry(n_rings: int, capacity: int) -> tuple:
    """(rings, capacity, first slot word, first span-stack word, words in all)."""
    slots = round_up(n_rings + 2, 8)
    stacks = slots + n_rings * capacity * 8
    return n_rings, capacity, slots, stacks, stacks + n_rings * STACK_WORDS + MAX_TYPES


def _switches(event_set, config) -> dict:
    """``{type name: on}`` from ``config``; ValueError for a rate between 0 and 1."""
    rates = config.resolve(event_set.layout)
    sampled = {name: rate for name, rate in rates.items() if rate not in (0.0, 1.0)}
    if sampled:
        raise ValueError(f"Tracer.cuda: sample rates {sampled}: a device tracer records a "
                         f"type always or never (sampling is the CPU tracer's); switch "
                         f"types off with enabled_events, or sample on the CPU")
    if config.path is not None:
        raise ValueError(f"Tracer.cuda: path={config.path!r}: a device tracer's rings are "
                         f"in device memory, not in a file; leave path unset")
    return {name: rate == 1.0 for name, rate in rates.items()}


class DeviceTracer:
    """Rings in device memory for ``@cuda.jit`` kernels (see the module doc)."""

    def __init__(self, event_set, config=None):
        from ..tracing.tracer import checked_arguments
        from ._clock import calibrate
        config = checked_arguments(event_set, config, "Tracer.cuda")
        switches = _switches(event_set, config)
        layout = event_set.layout
        self.event_set, self.layout, self.config = event_set, layout, config
        self.n_rings, self.capacity = config.max_threads, config.ring_capacity
        self.geometry = geometry(self.n_rings, self.capacity)
        words = np.zeros(self.geometry[4], dtype=np.uint64)
        for t in layout.types:
            words[self._switch_word(t)] = ALWAYS if switches[t.name] else 0
        self._dwords = cuda.to_device(words)
        self._read = np.zeros(self.n_rings, dtype=np.int64)
        self._delivered = np.zeros(self.n_rings, dtype=np.int64)
        self._dropped = np.zeros(self.n_rings, dtype=np.int64)
        self._lock = threading.Lock()
        self._context = SpanContext(self.n_rings)      # the drains' spans open on each ring
        #: a random 64-bit id of this tracer: half of its OTLP trace ids, as on the CPU
        self.tracer_id = int(np.random.SeedSequence().generate_state(1, dtype=np.uint64)[0]) | 1
        self.clock = calibrate()
        from ._target import tracer_type
        self._nbtype = tracer_type(event_set, self.geometry)
        if SIMULATOR:
            _track_simulated_lanes()
        self._handles = {}

    # -- kernels -----------------------------------------------------------------------------

    @property
    def _numba_type_(self):
        if self._dwords is None:
            raise ValueError("DeviceTracer is closed")
        return self._nbtype

    def to_device(self, retr, stream=0):
        """numba-cuda's argument protocol (``ArgHint``): the kernel gets the device words."""
        if self._dwords is None:
            raise ValueError("DeviceTracer is closed")
        return self._dwords

    def __getattr__(self, name):
        layout = self.__dict__.get("layout")
        if layout is None or name not in layout.by_name:
            raise AttributeError(name)
        handle = self._handles.get(name)
        if handle is None:
            t = layout.by_name[name]
            cls = _SimulatedSpan if t.kind is SPAN else _SimulatedEvent
            handle = self._handles[name] = cls(self, t)
        return handle

    # -- switches ----------------------------------------------------------------------------

    def _switch_word(self, t) -> int:
        nr, _, _, stacks, _ = self.geometry
        return stacks + nr * STACK_WORDS + t.index

    def thresholds(self) -> dict:
        """The switch word of every type, by name: 0 off, 2**64 - 1 on (the CPU tracer's
        threshold words of rates 0 and 1)."""
        words = self._words()
        return {t.name: int(words[self._switch_word(t)]) for t in self.layout.types}

    def sample_rates(self) -> dict:
        """Rate per type name: 1.0 on, 0.0 off."""
        return {name: 1.0 if th else 0.0 for name, th in self.thresholds().items()}

    def enable(self, event_type) -> None:
        """Switch a type on, for the kernels launched after this call."""
        self._switch(self.layout.type_of(event_type), True)

    def disable(self, event_type) -> None:
        """Switch a type off, for the kernels launched after this call: its emits cost a
        load and a branch; its spans are still pushed (their ends match), not written."""
        self._switch(self.layout.type_of(event_type), False)

    def set_sample_rate(self, event_type, rate) -> None:
        """1.0 is :meth:`enable`, 0.0 :meth:`disable`; a rate between them raises
        ValueError (sampling is the CPU tracer's)."""
        from .._values import as_rate
        t = self.layout.type_of(event_type)
        r = as_rate(rate, "sample_rate")
        if r not in (0.0, 1.0):
            raise ValueError(f"set_sample_rate({t.name!r}, {r}): a device tracer records a "
                             f"type always (1.0) or never (0.0); sampling is the CPU tracer's")
        self._switch(t, r == 1.0)

    def _switch(self, t, on: bool) -> None:
        if self._dwords is None:
            raise ValueError("DeviceTracer is closed")
        i = self._switch_word(t)
        self._dwords[i:i + 1].copy_to_device(np.array([ALWAYS if on else 0], dtype=np.uint64))

    # -- reading -----------------------------------------------------------------------------

    def _words(self) -> np.ndarray:
        if self._dwords is None:
            raise ValueError("DeviceTracer is closed")
        if not SIMULATOR:
            cuda.synchronize()
        return self._dwords.copy_to_host()

    def drain(self) -> np.ndarray:
        """Events recorded since the last drain, oldest first, as the CPU tracer's array."""
        with self._lock:
            words = self._words()
            nr, cap, first, stacks, _ = self.geometry
            writes = words[:nr].astype(np.int64)
            slots = words[first:stacks].reshape(nr, cap, 8)
            kept = []
            for r in range(nr):
                start, end = int(self._read[r]), int(writes[r])
                if end <= start:
                    continue
                begin = max(start, end - cap)
                positions = np.arange(begin, end, dtype=np.int64)
                rows = slots[r, positions & (cap - 1)]
                ok = (rows[:, 0] & np.uint64(POSITION_MASK)) == \
                    (positions & POSITION_MASK).astype(np.uint64)
                kept.append((r, positions[ok], rows[ok]))
                self._dropped[r] += (begin - start) + int((~ok).sum())
                self._delivered[r] += int(ok.sum())
                self._read[r] = end
            return self._records(kept)

    def _records(self, kept) -> np.ndarray:
        if not kept:
            return np.empty(0, dtype=self.layout.dtype)
        rows = np.concatenate([k[2] for k in kept])
        raw = np.ascontiguousarray(rows).view(self.layout.slot_dtype).reshape(-1)
        first = rows[:, 0].copy()           # (raw shares the rows: its sequence is set below)
        positions = np.concatenate([k[1] for k in kept]).astype(np.uint64)
        raw["sequence"] = positions
        events = self.layout.records(raw)
        events["timestamp"] = self.clock.to_unix_ns(rows[:, 1])
        warp = (first >> np.uint64(WARP_SHIFT)) & np.uint64(0x3F)
        block = first >> np.uint64(BLOCK_SHIFT)
        events["thread"] = (block << np.uint64(16)) | warp
        self._context.annotate(events, self.layout)     # (rows in ring and position order)
        order = np.argsort(events["timestamp"], kind="stable")
        return events[order]

    def external_traces(self) -> dict:
        """Explicit parents' trace ids: none on the device (``tracer.parent`` is the CPU's)."""
        return {}

    def trace_id_of(self, root: int) -> int:
        """The 128-bit trace id of the trace whose root key is ``root``."""
        return self.tracer_id << 64 | int(root)

    def stats(self) -> dict:
        """Per ring and in all: written (positions claimed), delivered and dropped by the
        drains so far, pending (written since); ``invalid``: events and spans refused (an
        argument out of range, an end of another type than the innermost span, too
        deep); ``span_refused``: span begins refused because their ring's stack was
        another warp's."""
        words = self._words()
        nr = self.n_rings
        written = words[:nr].astype(np.int64)
        pending = written - self._read
        return {"written": int(written.sum()), "delivered": int(self._delivered.sum()),
                "dropped": int(self._dropped.sum()), "pending": int(pending.sum()),
                "invalid": int(words[nr]), "span_refused": int(words[nr + 1]),
                "rings": [{"written": int(written[r]), "delivered": int(self._delivered[r]),
                           "dropped": int(self._dropped[r])} for r in range(nr)]}

    def close(self) -> None:
        self._dwords = None

    def __repr__(self) -> str:
        state = "closed" if self._dwords is None else ("simulated device" if SIMULATOR
                                                         else "device")
        return (f"<DeviceTracer {self.event_set.__name__} {self.n_rings}x{self.capacity}, "
                f"{state}>")


def _simulated_position():
    """(block, warp) of the calling simulated CUDA thread."""
    t = threading.current_thread()
    grid, bdim = t._manager._grid_dim, t._manager._block_dim
    b = t.blockIdx
    block = b.x + grid[0] * (b.y + grid[1] * b.z)
    return block, t.thread_id // 32, (bdim[0] * bdim[1] * bdim[2] + 31) // 32


class _SimulatedType:
    """``tr.<type>`` inside a simulated kernel: the device's slots, written by Python."""

    def __init__(self, tracer, t):
        self._tracer, self._type = tracer, t

    def _pack(self, method, args) -> tuple:
        """(in range, the slot's words 0..7: type byte and fields set)."""
        from ._device_set import _in_simulated_kernel, _refuse
        t, tr = self._type, self._tracer
        if not _in_simulated_kernel():
            _refuse(f"{t.name}.{method}")
        fields = list(t.fields.items())
        if len(args) != len(fields):
            raise TypeError(f"{t.name}.{method}: takes {len(fields)} field(s) "
                            f"{[n for n, _ in fields]}, got {len(args)}")
        slot = np.zeros(1, dtype=tr.layout.slot_dtype)
        slot["event_type"] = t.index
        try:
            for (name, ft), value in zip(fields, args):
                slot[name] = ft.python(value, f"{t.name}.{method}: {name}")
        except (ValueError, OverflowError):
            words = np.zeros(8, dtype=np.uint64)
            words[2] = t.index
            return False, words
        return True, slot.view(np.uint64).copy()

    def _on(self) -> bool:
        from ._ops import load_u64
        return bool(load_u64(self._tracer._dwords, self._tracer._switch_word(self._type)))

    def _where(self) -> tuple:
        block, warp, per_block = _simulated_position()
        return warp, block, (block * per_block + warp) % self._tracer.n_rings


class _SimulatedEvent(_SimulatedType):
    def emit(self, *args) -> bool:
        from ._ops import atomic_add_u64, fill_slot
        tr = self._tracer
        nr, cap, first, _, _ = tr.geometry
        ok, w = self._pack("emit", args)
        if not self._on():
            return False
        if not ok:
            atomic_add_u64(tr._dwords, nr, 1)           # refused and counted, as on the GPU
            return False
        warp, block, ring = self._where()
        p = int(atomic_add_u64(tr._dwords, ring, 1))
        fill_slot(tr._dwords, cap, first, ring, p, warp, block, *w[2:8])
        return True


class _SimulatedSpan(_SimulatedType):
    """A span's begin and end in a simulated kernel.  The simulator runs each lane as a
    Python thread and has no warp functions, so a span call waits here until its warp
    has converged: every other lane of the warp waits at a span call too, waits in
    ``syncthreads`` or has finished.  The lanes waiting at the same call are the active
    lanes; the lowest of them does the warp's work (:func:`._ops.span_begin` or
    :func:`._ops.span_end`, the GPU's bodies) and hands every one of them the result."""

    def _converged(self, method, fn):
        me = threading.current_thread()
        mgr, lane = me._manager, me.thread_id
        warp = lane // 32
        calls = me.__dict__.setdefault("_engram_numba_span_calls", {})
        key = (id(self._tracer), method, self._type.index)
        k = calls.get(key, 0)
        calls[key] = k + 1
        key += (k,)
        with _warp_cond:
            state = mgr.__dict__.setdefault("_engram_numba_warps", {})
            waiting, results = state.setdefault(warp, ({}, {}))
            waiting[lane] = key
            _warp_cond.notify_all()
            while True:
                if lane in results:
                    return results.pop(lane)
                group = sorted(x for x, at in waiting.items() if at == key)
                if group[0] == lane and self._settled(mgr, warp, waiting):
                    value = fn()
                    for x in group:
                        del waiting[x]
                        results[x] = value
                    _warp_cond.notify_all()
                    return results.pop(lane)
                _warp_cond.wait(0.002)      # (a lane that finished tells no one)

    @staticmethod
    def _settled(mgr, warp, waiting) -> bool:
        """No lane of ``warp`` runs freely: each has started and waits at a span call,
        waits in ``syncthreads`` or has finished (see :func:`_track_simulated_lanes`)."""
        lanes = mgr.__dict__.get("_engram_numba_lanes", {})
        size = int(np.prod(mgr._block_dim))
        for lane in range(warp * 32, min(warp * 32 + 32, size)):
            t = lanes.get(lane)
            if t is None:
                return False                # not started yet
            if lane not in waiting and not t.syncthreads_blocked \
                    and not getattr(t, "_engram_numba_done", False):
                return False
        return True

    def begin(self, *args):
        from ._ops import atomic_add_u64, span_begin
        tr = self._tracer
        nr, cap, first, stacks, _ = tr.geometry
        ok, w = self._pack("begin", args)
        if not ok:
            atomic_add_u64(tr._dwords, nr, 1)
        warp, block, ring = self._where()
        on = self._on()
        return self._converged("begin", lambda: span_begin(
            tr._dwords, nr, stacks, cap, first, self._type.index, ring, warp, block,
            ok and on, w[2], w[5], w[6], w[7]))

    def end(self):
        from ._device_set import _in_simulated_kernel, _refuse
        from ._ops import span_end
        if not _in_simulated_kernel():
            _refuse(f"{self._type.name}.end")
        tr = self._tracer
        nr, cap, first, stacks, _ = tr.geometry
        warp, block, ring = self._where()
        return self._converged("end", lambda: bool(span_end(
            tr._dwords, nr, stacks, cap, first, self._type.index, ring, warp, block)))


_warp_cond = threading.Condition()


def _track_simulated_lanes() -> None:
    """Let simulated span calls see every lane of their warp: the simulator's threads
    register with their block when made, and say when they finish (once per process)."""
    from numba.cuda.simulator import kernel
    cls = kernel.BlockThread
    if getattr(cls, "_engram_numba_tracked", False):
        return
    init, run = cls.__init__, cls.run

    def __init__(self, *args, **kwargs):
        init(self, *args, **kwargs)
        self._manager.__dict__.setdefault("_engram_numba_lanes", {})[self.thread_id] = self

    def run_(self):
        try:
            run(self)
        finally:
            with _warp_cond:
                self._engram_numba_done = True
                _warp_cond.notify_all()

    cls.__init__, cls.run = __init__, run_
    cls._engram_numba_tracked = True


def device_tracer(event_set, config=None):
    """What ``Tracer.cuda(event_set, config)`` returns."""
    cls = DeviceTracer
    if not SIMULATOR:
        from numba.cuda.args import ArgHint
        cls = _gpu_class(ArgHint)
    return cls(event_set, config)


_gpu_classes: dict = {}


def _gpu_class(arghint):
    cls = _gpu_classes.get(arghint)
    if cls is None:
        cls = _gpu_classes[arghint] = type("DeviceTracer", (DeviceTracer, arghint), {})
    return cls
