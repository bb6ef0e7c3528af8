"""prange workers inherit the launching thread's span (internal).

Every numba parallel region enters through one native function,
``numba_parallel_for(fn, args, dims, steps, data, ...)``, on the thread that
reaches the loop; the threading layer then calls ``fn(args, dims, steps, data)``
on its workers, one call per chunk of the loop.  :func:`register` puts a
compiled wrapper in numba's place (see ``.._compat.replace_parallel_for``).  For
every registered tracer whose ring the launching thread owns with a span open
(or with a span inherited from an enclosing region), the wrapper notes that
innermost span in a region record of its own, and launches the region with
``fn`` and ``data`` replaced by a trampoline and the record.  On each worker the
trampoline stores the region's span in the ``inherited`` word of the worker's
own ring header (claiming the ring as the worker's first record would), runs
the chunk, and puts the word back as it was; a root span begun on the worker
takes it as parent (``_ring.span_begin``).  When the launcher's trace key is
not that span (a nested span, or a trace joined with ``tracer.parent``), the
span's trace id is written to the context table too, so that the workers'
spans carry the launcher's trace id.

Instant events follow the same rule.  An event's slot has no room for a span
id (its payload may hold declared fields only), so the ring says it with a
*context record* (flags kind ``FLAG_CONTEXT``, the span id where a begin has
its own).  When the worker has no span open as its chunk starts, the
trampoline puts the region's span in the ring's ``announce`` word; the chunk's
first instant event writes the context record before itself (``_ring.emit``:
one load and a branch per event, the record out of line), and if one was
written, the trampoline writes another after the chunk with the span inherited
before (usually 0).  So a chunk that emits no instant event writes no record
at all, and one that does writes two; a tracer whose set declares spans only
never sets the word.  Readers (``spans.SpanContext``) apply the records in ring
order, as they apply begins and ends: an instant event with no span open on its
ring belongs to the span of the last context record, and the records
themselves are never returned.  They take ring room like events and count in
the ring's written, delivered and dropped figures; ``stats()`` shows how many
were written as ``contexts``.

So only the workers of a region inherit, each from the region it runs a chunk
of: a thread outside the region (a nogil Python thread, say) is not affected,
and regions launched at the same time from several threads (omp, tbb) each
pass their own launcher's span.  Limits: up to MAX_REGIONS regions at a time
take part (more run without inheriting), and up to MAX_TRACERS live tracers
with spans (a slot is freed when its tracer is collected); a worker claims its
ring in such a tracer when it starts a chunk, whether or not the chunk records
into it; kernels linked before the wrapper was put in place keep numba's own
entry and pass nothing.  A reader that starts inside a chunk (``read()`` after
the chunk's first context record was overwritten, ``follow()`` begun while it
runs) does not know the chunk's span, as it does not know a span whose begin it
did not see.
"""

from __future__ import annotations

import os
import threading
import weakref

import numpy as np
from llvmlite import ir
from numba import cfunc, types
from numba.extending import intrinsic

from .. import _compat
from .._atomics import atomic_exchange
from .._addr import add_u64, cas_u64, load_u64, store_u64, store_u64_release, thread_id
from .._claim import _claim_function, owns
from . import _ring as ringbuf

MAX_TRACERS = 64                     # (the trampoline's frame holds 2 words each)
# a tracer's descriptor (never changed once published): base, th_end, n_rings,
# contexts offset, pid, slots offset, capacity, clock, whether it has instant events.  The registry: MAX_TRACERS slots (a descriptor's address,
# 0 = free), then the number of regions reading the slots.
BUSY = MAX_TRACERS
_registry = np.zeros(MAX_TRACERS + 1, dtype=np.uint64)
# region records, one per parallel region running with spans to pass: the chunk
# function (0 = free record), its data, the number of pairs, then (descriptor,
# launcher span) pairs
MAX_REGIONS = 32
REGION_WORDS = 3 + 2 * MAX_TRACERS + 1
_regions = np.zeros(MAX_REGIONS * REGION_WORDS, dtype=np.uint64)
_lock = threading.Lock()
_installed = False
_members: dict = {}
_held: dict = {}
_retired: list = []
_keep: list = []


@intrinsic
def _ptr_int(typingctx, ptr):
    def codegen(context, builder, sig, args):
        return builder.ptrtoint(args[0], ir.IntType(64))
    return types.uint64(types.voidptr), codegen


@intrinsic
def _int_ptr(typingctx, addr):
    def codegen(context, builder, sig, args):
        return builder.inttoptr(args[0], ir.IntType(8).as_pointer())
    return types.voidptr(types.uint64), codegen


@intrinsic
def _run_chunk(typingctx, fn, args, dims, steps, data):
    """Call the chunk function at address ``fn`` with (args, dims, steps, data)."""
    sig = types.void(types.uint64, types.voidptr, types.voidptr, types.voidptr, types.uint64)

    def codegen(context, builder, sig, a):
        vp = ir.IntType(8).as_pointer()
        fty = ir.FunctionType(ir.VoidType(), [vp] * 4)
        target = builder.inttoptr(a[0], fty.as_pointer())
        builder.call(target, [a[1], a[2], a[3], builder.inttoptr(a[4], vp)])
        return context.get_dummy_value()
    return sig, codegen


@intrinsic
def _claim_ring(typingctx, table, n, pid):
    """The calling thread's ring of a tracer (its owner table at ``table``, ``n`` rings),
    claimed as a kernel claims it; -1 if every ring is taken."""
    sig = types.int64(types.uint64, types.uint64, types.uint64)

    def codegen(context, builder, sig, a):
        fn = _claim_function(builder.module, ringbuf.CLAIM_THREAD_WORDS)
        return builder.call(fn, [a[0], ir.Constant(ir.IntType(64), ringbuf.RING_HEADER_SIZE),
                                 a[1], a[2]])
    return sig, codegen


@intrinsic
def _frame_words(typingctx, n):
    """The address of ``n`` (a constant) u64 words in the caller's stack frame."""
    if not isinstance(n, types.IntegerLiteral):
        return None
    count = n.literal_value

    def codegen(context, builder, sig, a):
        from numba.core import cgutils
        slots = cgutils.alloca_once(builder, ir.ArrayType(ir.IntType(64), count))
        return builder.ptrtoint(slots, ir.IntType(64))
    return types.uint64(n), codegen


def _launcher_span(base, th_end, n_rings, pid):
    """(innermost open span, trace key) of the calling thread in the tracer at ``base``;
    with no span open, the span it inherited as a worker of an enclosing region."""
    tid = np.uint64(thread_id())
    for i in range(n_rings):
        header = base + th_end + np.uint64(ringbuf.RING_HEADER_SIZE) * np.uint64(i)
        if owns(header + np.uint64(ringbuf.R_OWNER), tid, pid):
            depth = load_u64(header + np.uint64(ringbuf.R_DEPTH))
            if depth == 0:
                inherited = load_u64(header + np.uint64(ringbuf.R_INHERITED))
                return inherited, inherited
            if depth > ringbuf.MAX_DEPTH:
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
    records = np.uint64(_regions.ctypes.data)
    span_of = njit(_launcher_span)
    N = ringbuf.N_CONTEXTS
    CS = ringbuf.CONTEXT_SIZE
    RW = np.uint64(8 * REGION_WORDS)
    R_INHERITED = np.uint64(ringbuf.R_INHERITED)
    R_ANNOUNCE = np.uint64(ringbuf.R_ANNOUNCE)
    R_CONTEXTS = np.uint64(ringbuf.R_CONTEXTS)
    R_DEPTH = np.uint64(ringbuf.R_DEPTH)
    NOT_MARKED = np.uint64(0xFFFFFFFFFFFFFFFF)
    context_record = ringbuf.context_record
    HEADER = np.uint64(ringbuf.RING_HEADER_SIZE)
    OWNER = np.uint64(ringbuf.R_OWNER)

    @njit
    def trace_of(base, ctx, key):
        """The 128-bit trace id (high, low) of trace key ``key``."""
        for k in range(N):
            entry = base + ctx + np.uint64(CS * k)
            if load_u64(entry) == key:
                return load_u64(entry + np.uint64(8)), load_u64(entry + np.uint64(16))
        return load_u64(base + np.uint64(ringbuf.TRACER_ID_OFF)), key

    def chunk(args, dims, steps, data):
        # on a worker: the region's spans into the worker's rings, the chunk, then back;
        # saved per tracer: the ring, its inherited and announce words, and its count of
        # context records at the start (NOT_MARKED: the worker had a span open)
        rec = _ptr_int(data)
        n = load_u64(rec + np.uint64(16))
        saved = _frame_words(256)                  # 4 * MAX_TRACERS
        for i in range(n):
            e = load_u64(rec + np.uint64(24 + 16 * i))
            base = load_u64(e)
            th_end = load_u64(e + np.uint64(8))
            ring = _claim_ring(base + th_end + OWNER, load_u64(e + np.uint64(16)),
                               load_u64(e + np.uint64(32)))
            at = saved + np.uint64(32 * i)
            store_u64(at, np.uint64(ring))
            if ring >= 0:
                header = base + th_end + HEADER * np.uint64(ring)
                span = load_u64(rec + np.uint64(32 + 16 * i))
                store_u64(at + np.uint64(8), load_u64(header + R_INHERITED))
                store_u64(header + R_INHERITED, span)
                store_u64(at + np.uint64(24), NOT_MARKED)
                # no span open on the worker: its instant events belong to the region's
                # span, which its first event announces (ringbuf.emit)
                if load_u64(header + R_DEPTH) == 0 and load_u64(e + np.uint64(64)) != 0:
                    store_u64(at + np.uint64(16), load_u64(header + R_ANNOUNCE))
                    store_u64(at + np.uint64(24), load_u64(header + R_CONTEXTS))
                    store_u64(header + R_ANNOUNCE, span)
        _run_chunk(load_u64(rec), args, dims, steps, load_u64(rec + np.uint64(8)))
        for i in range(n):
            at = saved + np.uint64(32 * i)
            ring = np.int64(load_u64(at))
            if ring >= 0:
                e = load_u64(rec + np.uint64(24 + 16 * i))
                header = load_u64(e) + load_u64(e + np.uint64(8)) + HEADER * np.uint64(ring)
                before = load_u64(at + np.uint64(8))
                store_u64(header + R_INHERITED, before)
                count = load_u64(at + np.uint64(24))
                if count == NOT_MARKED:
                    continue
                if load_u64(header + R_CONTEXTS) == count:
                    # nothing announced: an enclosing chunk's announcement, if any, waits
                    store_u64(header + R_ANNOUNCE, load_u64(at + np.uint64(16)))
                else:
                    # readers hold this chunk's span: back to the span before (an
                    # enclosing chunk's, whose end then writes a record too)
                    context_record(load_u64(e), load_u64(e + np.uint64(40)), header, ring,
                                   load_u64(e + np.uint64(48)), load_u64(e + np.uint64(56)),
                                   before)

    vp = types.voidptr
    trampoline = cfunc(types.void(vp, vp, vp, vp), nopython=True)(chunk)
    _keep.append(trampoline)
    trampoline_ptr = np.uint64(trampoline.address)
    busy = reg + np.uint64(8 * BUSY)

    def wrapper(fn, args, dims, steps, data, inner, count, nthreads):
        add_u64(busy, np.uint64(1))
        fn_addr = _ptr_int(fn)
        rec = np.uint64(0)
        for k in range(MAX_REGIONS):
            if cas_u64(records + RW * np.uint64(k), np.uint64(0), fn_addr) == 0:
                rec = records + RW * np.uint64(k)
                break
        n = 0
        if rec != 0:
            for t in range(MAX_TRACERS):
                e = load_u64(reg + np.uint64(8 * t))
                if e == 0:
                    continue
                base = load_u64(e)
                ctx = load_u64(e + np.uint64(24))
                span, key = span_of(base, load_u64(e + np.uint64(8)),
                                    load_u64(e + np.uint64(16)), load_u64(e + np.uint64(32)))
                if span != 0:
                    if key != span:
                        hi, lo = trace_of(base, ctx, key)
                        c = add_u64(base + np.uint64(ringbuf.EXT_COUNT_OFF), np.uint64(1))
                        entry = base + ctx + np.uint64(CS) * (c % np.uint64(N))
                        store_u64(entry, np.uint64(0))
                        store_u64(entry + np.uint64(8), hi)
                        store_u64(entry + np.uint64(16), lo)
                        store_u64(entry, span)
                    store_u64(rec + np.uint64(24 + 16 * n), e)
                    store_u64(rec + np.uint64(32 + 16 * n), span)
                    n += 1
        if n > 0:
            store_u64(rec + np.uint64(8), _ptr_int(data))
            store_u64(rec + np.uint64(16), np.uint64(n))
            launch(_int_ptr(trampoline_ptr), args, dims, steps, _int_ptr(rec), inner, count,
                   nthreads)
        else:
            launch(fn, args, dims, steps, data, inner, count, nthreads)
        if rec != 0:
            store_u64_release(rec, np.uint64(0))
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


def register(tracer, words: np.ndarray, th_end: int, n_rings: int, contexts: int,
             slots: int, capacity: int, clock: int, instants: bool) -> None:
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
        desc = np.array([words.ctypes.data, th_end, n_rings, contexts, os.getpid(), slots,
                         capacity, clock, int(instants)], dtype=np.uint64)
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
