"""Device tracers: ``Tracer.cuda(Events, config)``, rings in device memory.

Events only (spans, sampling rates and switching types off are the CPU
tracer's; a device tracer refuses a set that declares spans).

Device words (uint64)::

    0 .. R-1      write index of each ring (positions claimed so far)
    R             events refused: an argument out of its field's range
    S = round_up(R + 1, 8)
    S + (r * C + (p & (C - 1))) * 8     the 64-byte slot of ring r, position p

A slot is the CPU tracer's (``EventSet.layout.slot_dtype``: timestamp at 8,
type, flags and ring at 16, the fields from 20) except its first word: the
CPU's sequence becomes ``p & 0xFFFFFFFF | warp << 32 | block << 38`` (the
recording warp's index in its block and its block's linear index), written
last, after a fence, so a drain knows the position and who wrote it.

Recording (one ``emit``): the active lanes of a warp claim consecutive
positions of their warp's ring (``ring = (block * warps per block + warp) % R``)
with one ``atom.global.add`` from the lowest lane, which ``shfl.sync`` hands to
the others; each lane writes its slot with its own ``%globaltimer`` reading.

Draining (:meth:`DeviceTracer.drain`, after the kernels it reads finished: it
synchronizes the device first): per ring, the positions since the last drain
that were overwritten (more than C behind the write index) or whose slot does
not hold their position are dropped, the rest delivered, so ``written =
delivered + dropped`` per ring exactly; the events come out as the CPU
tracer's drained array (timestamps in Unix ns, :mod:`._clock`), so every
exporter reads them unchanged.  A "thread" is a (block, warp) pair:
``thread = block << 16 | warp``, named ``block B warp W`` (:func:`thread_name`).
"""

from __future__ import annotations

import threading

import numpy as np
from numba import cuda

from .._region import round_up
from ..tracing.kinds import SPAN
from ._ops import SIMULATOR

POSITION_MASK = 0xFFFFFFFF
WARP_SHIFT, BLOCK_SHIFT = 32, 38


def thread_name(thread: int) -> str:
    """How a device event's ``thread`` reads: ``block B warp W``."""
    return f"block {int(thread) >> 16} warp {int(thread) & 0xFFFF}"


def geometry(n_rings: int, capacity: int) -> tuple:
    """(rings, capacity, first slot word, words in all)."""
    slots = round_up(n_rings + 1, 8)
    return n_rings, capacity, slots, slots + n_rings * capacity * 8


class DeviceTracer:
    """Rings in device memory for ``@cuda.jit`` kernels (see the module doc)."""

    def __init__(self, event_set, config=None):
        from ..tracing.tracer import checked_arguments
        from ._clock import calibrate
        config = checked_arguments(event_set, config, "Tracer.cuda")
        layout = event_set.layout
        spans = [t.name for t in layout.types if t.kind is SPAN]
        if spans:
            raise ValueError(f"{event_set.__name__}: a device tracer records events only; "
                             f"spans {spans} are the CPU tracer's (declare them in another "
                             f"set)")
        self.event_set, self.layout, self.config = event_set, layout, config
        self.n_rings, self.capacity = config.max_threads, config.ring_capacity
        self.geometry = geometry(self.n_rings, self.capacity)
        self._dwords = cuda.to_device(np.zeros(self.geometry[3], dtype=np.uint64))
        self._read = np.zeros(self.n_rings, dtype=np.int64)
        self._delivered = np.zeros(self.n_rings, dtype=np.int64)
        self._dropped = np.zeros(self.n_rings, dtype=np.int64)
        self._lock = threading.Lock()
        self.clock = calibrate()
        from ._target import tracer_type
        self._nbtype = tracer_type(event_set, self.geometry)
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
            handle = self._handles[name] = _SimulatedEvent(self, layout.by_name[name])
        return handle

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
            nr, cap, first, _ = self.geometry
            writes = words[:nr].astype(np.int64)
            slots = words[first:].reshape(nr, cap, 8)
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
        order = np.argsort(events["timestamp"], kind="stable")
        return events[order]

    def stats(self) -> dict:
        """Per ring and in all: written (positions claimed), delivered and dropped by the
        drains so far, pending (written since), and events refused for a bad argument."""
        words = self._words()
        nr = self.n_rings
        written = words[:nr].astype(np.int64)
        pending = written - self._read
        return {"written": int(written.sum()), "delivered": int(self._delivered.sum()),
                "dropped": int(self._dropped.sum()), "pending": int(pending.sum()),
                "invalid": int(words[nr]),
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


class _SimulatedEvent:
    """``tr.<event>`` inside a simulated kernel: the device's slot, written by Python."""

    def __init__(self, tracer, t):
        self._tracer, self._type = tracer, t

    def emit(self, *args) -> bool:
        from ._device_set import _in_simulated_kernel, _refuse
        t, tr = self._type, self._tracer
        if not _in_simulated_kernel():
            _refuse(f"{t.name}.emit")
        from ._ops import atomic_add_u64, global_timer, store_u64
        nr, cap, first, _ = tr.geometry
        fields = list(t.fields.items())
        if len(args) != len(fields):
            raise TypeError(f"{t.name}.emit: takes {len(fields)} field(s) "
                            f"{[n for n, _ in fields]}, got {len(args)}")
        slot = np.zeros(1, dtype=tr.layout.slot_dtype)
        try:
            for (name, ft), value in zip(fields, args):
                slot[name] = ft.python(value, f"{t.name}.emit: {name}")
        except (ValueError, OverflowError):
            atomic_add_u64(tr._dwords, nr, 1)           # refused and counted, as on the GPU
            return False
        block, warp, per_block = _simulated_position()
        ring = (block * per_block + warp) % nr
        slot["event_type"] = t.index
        slot["ring"] = ring
        p = int(atomic_add_u64(tr._dwords, ring, 1))
        base = first + (ring * cap + (p & (cap - 1))) * 8
        w = slot.view(np.uint64)
        store_u64(tr._dwords, base + 1, global_timer())
        for k in range(2, 8):
            store_u64(tr._dwords, base + k, w[k])
        store_u64(tr._dwords, base, (p & POSITION_MASK) | (warp << WARP_SHIFT)
                  | (block << BLOCK_SHIFT))
        return True


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
