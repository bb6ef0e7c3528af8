"""prange workers inherit the launching thread's span (internal).

Every numba parallel region enters through one native function,
``numba_parallel_for``, on the thread that reaches the loop.  :func:`register`
puts a compiled wrapper in its place (see ``.._compat.replace_parallel_for``):
for every registered tracer whose ring the launching thread owns with a span
open, the wrapper stores that innermost span's id in the tracer's
``prange_parent`` header word for the region's duration, so that a root span
begun on a worker takes it as parent (``_ring.span_begin``).  When the launcher's
trace key is not that span (a nested span, or a trace joined with
``tracer.parent``), the span's trace id is written to the context table too, so
that the workers' spans carry the launcher's trace id.

While a region runs, the word applies to root spans begun on any thread (as
``tracer.parent`` does).  Regions launched at the same time from several threads:
the latest entered applies; each clears the word when it ends if it still holds
its own span.  Up to MAX_TRACERS live tracers with spans take part (a slot is
freed when its tracer is collected).  Kernels linked before the wrapper was put
in place keep numba's own entry and pass nothing.
"""

from __future__ import annotations

import os
import threading
import weakref

import numpy as np
from numba import cfunc

from .. import _compat
from .._atomics import atomic_exchange
from .._addr import add_u64, cas_u64, load_u64, store_u64, thread_id
from .._claim import owns
from . import _ring as ringbuf

MAX_TRACERS = 64
# a tracer's descriptor (never changed once published): base, th_end, n_rings,
# contexts offset, pid.  The registry: MAX_TRACERS slots (a descriptor's address,
# 0 = free), then the number of regions reading the slots.
BUSY = MAX_TRACERS
_registry = np.zeros(MAX_TRACERS + 1, dtype=np.uint64)
_lock = threading.Lock()
_installed = False
_members: dict = {}
_held: dict = {}
_retired: list = []
_keep: list = []


def _launcher_span(base, th_end, n_rings, pid):
    """(innermost open span, trace key) of the calling thread in the tracer at ``base``."""
    tid = np.uint64(thread_id())
    for i in range(n_rings):
        header = base + th_end + np.uint64(ringbuf.RING_HEADER_SIZE) * np.uint64(i)
        if owns(header + np.uint64(ringbuf.R_OWNER), tid, pid):
            depth = load_u64(header + np.uint64(ringbuf.R_DEPTH))
            if depth == 0 or depth > ringbuf.MAX_DEPTH:
                return np.uint64(0), np.uint64(0)
            top = np.uint64(ringbuf.R_STACK_IDS) + np.uint64(8) * (depth - np.uint64(1))
            span = load_u64(header + top)
            key = load_u64(header + np.uint64(ringbuf.R_ROOT_PARENT))
            if key == 0:
                key = load_u64(header + np.uint64(ringbuf.R_STACK_IDS))
            return span, key
    return np.uint64(0), np.uint64(0)


def _build(original: int):
    from numba import njit
    launch = _compat.parallel_for_caller(original)
    _keep.append(launch)
    reg = np.uint64(_registry.ctypes.data)
    span_of = njit(_launcher_span)
    N = ringbuf.N_CONTEXTS
    CS = ringbuf.CONTEXT_SIZE

    @njit
    def trace_of(base, ctx, key):
        """The 128-bit trace id (high, low) of trace key ``key``."""
        for k in range(N):
            entry = base + ctx + np.uint64(CS * k)
            if load_u64(entry) == key:
                return load_u64(entry + np.uint64(8)), load_u64(entry + np.uint64(16))
        return load_u64(base + np.uint64(ringbuf.TRACER_ID_OFF)), key

    busy = reg + np.uint64(8 * BUSY)

    def wrapper(fn, args, dims, steps, data, inner, count, nthreads):
        add_u64(busy, np.uint64(1))
        for t in range(MAX_TRACERS):
            e = load_u64(reg + np.uint64(8 * t))
            if e == 0:
                continue
            base = load_u64(e)
            ctx = load_u64(e + np.uint64(24))
            span, key = span_of(base, load_u64(e + np.uint64(8)), load_u64(e + np.uint64(16)),
                                load_u64(e + np.uint64(32)))
            if span != 0:
                if key != span:
                    hi, lo = trace_of(base, ctx, key)
                    c = add_u64(base + np.uint64(ringbuf.EXT_COUNT_OFF), np.uint64(1))
                    entry = base + ctx + np.uint64(CS) * (c % np.uint64(N))
                    store_u64(entry, np.uint64(0))
                    store_u64(entry + np.uint64(8), hi)
                    store_u64(entry + np.uint64(16), lo)
                    store_u64(entry, span)
                store_u64(base + np.uint64(ringbuf.PRANGE_PARENT_OFF), span)
        launch(fn, args, dims, steps, data, inner, count, nthreads)
        for t in range(MAX_TRACERS):
            e = load_u64(reg + np.uint64(8 * t))
            if e == 0:
                continue
            base = load_u64(e)
            span, key = span_of(base, load_u64(e + np.uint64(8)), load_u64(e + np.uint64(16)),
                                load_u64(e + np.uint64(32)))
            if span != 0:
                cas_u64(base + np.uint64(ringbuf.PRANGE_PARENT_OFF), span, np.uint64(0))
        add_u64(busy, np.uint64(0xFFFFFFFFFFFFFFFF))

    return cfunc(_compat.parallel_for_signature(), nopython=True)(wrapper)


def disabled() -> bool:
    return os.environ.get("ENGRAM_NUMBA_PRANGE_CONTEXT", "1") == "0"


def _install() -> None:
    global _installed
    with _lock:
        if _installed:
            return
        compiled = _build(_compat.parallel_for_address())
        _keep.append(compiled)
        _compat.replace_parallel_for(compiled)
        _installed = True


def register(tracer, words: np.ndarray, th_end: int, n_rings: int, contexts: int) -> None:
    """Make parallel regions pass the launching thread's span to the workers of
    ``tracer`` (region ``words``).  numba's entry is replaced once the threading layer
    is launched; kernels linked before keep numba's own entry and pass nothing."""
    if disabled():
        return
    key = id(tracer)
    with _lock:
        k = _members.get(key)
        if k is None:
            free = np.flatnonzero(_registry[:MAX_TRACERS] == 0)
            if free.size == 0:
                return                     # (more than MAX_TRACERS tracers with spans)
            k = int(free[0])
            _members[key] = k
            weakref.finalize(tracer, unregister, key)
        desc = np.array([words.ctypes.data, th_end, n_rings, contexts, os.getpid()],
                        dtype=np.uint64)
        atomic_exchange(_registry, k, np.uint64(desc.ctypes.data))
        _retire(_held.pop(key, None))
        _held[key] = (desc, words)         # the memory stays mapped while registered
    if not _installed:
        _compat.when_threading_layer_launched(_install)


def _retire(held) -> None:
    # a region entered before the slot changed may still be reading the old memory:
    # kept until no region is reading the slots
    if held is not None:
        _retired.append(held)
    if _registry[BUSY] == 0:
        _retired.clear()


def unregister(key) -> None:
    with _lock:
        k = _members.pop(key, None)
        if k is None:
            return
        atomic_exchange(_registry, k, np.uint64(0))
        _retire(_held.pop(key, None))
