"""Device primitives on a metric set's words (a uint64 array in device memory).

Two implementations of one small interface, picked once at import:

* **GPU** (numba-cuda compiling for a device): intrinsics that cast the
  element's address to the global address space (``addrspace(1)``), so that
  every atomic is an ``atom.global.*`` instruction whatever the caller's
  inlining did to the pointer, plus warp-aggregated adds.
* **Simulator** (``NUMBA_ENABLE_CUDASIM=1``): plain Python on the numpy array
  behind the simulated device array, under one lock (the simulator runs each
  CUDA thread as a Python thread and has no warp-level functions, so nothing
  is aggregated there).

The recording bodies (:mod:`._bodies`) call only these names, so the same
Python source records in both.

Warp aggregation (GPU): the active lanes that record to the same word find
each other with ``match.any.sync`` on the word index; the lowest lane of each
group (:func:`is_leader`: ``peers & -peers`` is its bit) adds the group's
total with one ``atom.global.add``.  ``inc`` totals with ``popc(peers)``;
``add(n)`` sums the peers' ``n`` with one ``shfl.sync`` per peer (every peer
runs the same loop over the same mask, as ``shfl.sync`` requires).  A
histogram's sum and extremes (:func:`warp_observe`) are gathered the same way,
by slot, with butterfly shuffles when the whole warp records into one slot.
"""

from __future__ import annotations

import threading
import time

import numpy as np
from numba import cuda

from ..tracing import _ring
from ..tracing.schema import FLAG_BEGIN as _FLAG_BEGIN, FLAG_END as _FLAG_END

SIMULATOR = bool(cuda.config.ENABLE_CUDASIM)


def is_leader(peers, lane):
    """Whether ``lane`` is the lowest set bit of the 32-bit mask ``peers`` (target-agnostic:
    the GPU code and the tests on the CPU run this same source)."""
    peers = np.uint32(peers)
    return (peers & (~peers + np.uint32(1))) == (np.uint32(1) << np.uint32(lane))


if SIMULATOR:
    _lock = threading.Lock()
    _F64 = np.float64

    def device(fn):
        """Recording bodies run as plain Python in the simulator."""
        return fn

    def _host(words):
        return getattr(words, "_ary", words)

    def atomic_add_u64(words, i, n):
        with _lock:
            w = _host(words)
            old = w[i]
            w[i] = np.uint64((int(old) + int(n)) & 0xFFFFFFFFFFFFFFFF)
            return old

    def warp_inc(words, i):
        atomic_add_u64(words, i, 1)

    def warp_add(words, i, n):
        atomic_add_u64(words, i, n)

    def warp_observe(words, total, high, low, v, key):
        """A histogram's sum and extremes, lane by lane (the simulator has no warps)."""
        atomic_add_f64(words, total, v)
        atomic_max_u64(words, high, key)
        atomic_max_u64(words, low, ~np.uint64(key))

    def atomic_add_f64(words, i, v):
        with _lock:
            w = _host(words)
            w[i] = np.array([w[i].view(_F64) + _F64(v)], _F64).view(np.uint64)[0]

    def atomic_max_u64(words, i, v):
        with _lock:
            w = _host(words)
            if np.uint64(v) > w[i]:
                w[i] = np.uint64(v)

    def atomic_cas_u64(words, i, expected, desired):
        with _lock:
            w = _host(words)
            old = w[i]
            if old == np.uint64(expected):
                w[i] = np.uint64(desired)
            return old

    def load_u64(words, i):
        with _lock:
            return _host(words)[i]

    def store_u64(words, i, v):
        with _lock:
            _host(words)[i] = np.uint64(v)

    def store_f64(words, i, v):
        with _lock:
            _host(words)[i] = np.array([v], _F64).view(np.uint64)[0]

    def fence():
        """The simulator's ``membar.gl``: its stores are made under one lock, in order."""

    def global_timer():
        """The simulator's ``%globaltimer``: CLOCK_MONOTONIC ns, an epoch other than Unix
        time (as the device's is not promised to be), so calibration is exercised."""
        return np.uint64(time.monotonic_ns())

    def sm_id():
        """The simulator has no SMs: the block index stands in, so copies are spread."""
        block = getattr(threading.current_thread(), "blockIdx", None)
        return 0 if block is None else int(block.x)

else:
    from llvmlite import ir
    from numba import types
    from numba.core import cgutils
    from numba.extending import intrinsic

    def device(fn):
        """A recording body: a CUDA device function, inlined into the kernel."""
        return cuda.jit(device=True, forceinline=True)(fn)

    def _global(context, builder, arrty, ary, idx, llty):
        """The address of ``ary[idx]`` as an ``llty`` pointer in the global address space."""
        arr = context.make_array(arrty)(context, builder, ary)
        ptr = cgutils.get_item_pointer(context, builder, arrty, arr, [idx], wraparound=False)
        gptr = builder.addrspacecast(ptr, ir.PointerType(ptr.type.pointee, 1))
        return builder.bitcast(gptr, ir.PointerType(llty, 1))

    def _index(context, builder, ity, i):
        return context.cast(builder, i, ity, types.intp)

    def _check(words):
        if not (isinstance(words, types.Array) and words.dtype == types.uint64
                and words.ndim == 1):
            raise TypeError(f"expected a metric set's words (uint64[:]), got {words}")

    @intrinsic
    def atomic_add_u64(typingctx, words, i, n):
        _check(words)
        sig = types.uint64(words, i, n)

        def codegen(context, builder, sig, args):
            ptr = _global(context, builder, words, args[0], _index(context, builder, i, args[1]),
                          ir.IntType(64))
            val = context.cast(builder, args[2], n, types.uint64)
            return builder.atomic_rmw("add", ptr, val, "monotonic")
        return sig, codegen

    @intrinsic
    def atomic_max_u64(typingctx, words, i, v):
        _check(words)
        sig = types.uint64(words, i, v)

        def codegen(context, builder, sig, args):
            ptr = _global(context, builder, words, args[0], _index(context, builder, i, args[1]),
                          ir.IntType(64))
            val = context.cast(builder, args[2], v, types.uint64)
            return builder.atomic_rmw("umax", ptr, val, "monotonic")
        return sig, codegen

    @intrinsic
    def atomic_cas_u64(typingctx, words, i, expected, desired):
        _check(words)
        sig = types.uint64(words, i, expected, desired)

        def codegen(context, builder, sig, args):
            ptr = _global(context, builder, words, args[0], _index(context, builder, i, args[1]),
                          ir.IntType(64))
            old = context.cast(builder, args[2], expected, types.uint64)
            new = context.cast(builder, args[3], desired, types.uint64)
            out = builder.cmpxchg(ptr, old, new, "monotonic", "monotonic")
            return builder.extract_value(out, 0)
        return sig, codegen

    @intrinsic
    def atomic_add_f64(typingctx, words, i, v):
        """The hardware's f64 atomic add (sm_60 and later): ``atom.global.add.f64``."""
        _check(words)
        sig = types.float64(words, i, v)

        def codegen(context, builder, sig, args):
            ptr = _global(context, builder, words, args[0], _index(context, builder, i, args[1]),
                          ir.DoubleType())
            val = context.cast(builder, args[2], v, types.float64)
            fnty = ir.FunctionType(ir.DoubleType(), (ptr.type, ir.DoubleType()))
            fn = cgutils.get_or_insert_function(builder.module, fnty,
                                                "llvm.nvvm.atomic.load.add.f64.p1f64")
            return builder.call(fn, (ptr, val))
        return sig, codegen

    @intrinsic
    def load_u64(typingctx, words, i):
        """``ld.volatile.global.u64``: an aligned word, never torn, never served from a
        register or a stale cache line (libNVVM refuses LLVM's ``load atomic``)."""
        _check(words)
        sig = types.uint64(words, i)

        def codegen(context, builder, sig, args):
            ptr = _global(context, builder, words, args[0], _index(context, builder, i, args[1]),
                          ir.IntType(64))
            asm = ir.InlineAsm(ir.FunctionType(ir.IntType(64), [ptr.type]),
                               "ld.volatile.global.u64 $0, [$1];", "=l,l", side_effect=True)
            return builder.call(asm, [ptr])
        return sig, codegen

    @intrinsic
    def store_u64(typingctx, words, i, v):
        _check(words)
        sig = types.void(words, i, v)

        def codegen(context, builder, sig, args):
            ptr = _global(context, builder, words, args[0], _index(context, builder, i, args[1]),
                          ir.IntType(64))
            builder.store(context.cast(builder, args[2], v, types.uint64), ptr, align=8)
            return context.get_dummy_value()
        return sig, codegen

    @intrinsic
    def store_f64(typingctx, words, i, v):
        _check(words)
        sig = types.void(words, i, v)

        def codegen(context, builder, sig, args):
            ptr = _global(context, builder, words, args[0], _index(context, builder, i, args[1]),
                          ir.DoubleType())
            builder.store(context.cast(builder, args[2], v, types.float64), ptr, align=8)
            return context.get_dummy_value()
        return sig, codegen

    @intrinsic
    def global_timer(typingctx):
        """``%globaltimer``: the device's nanosecond clock (its epoch is calibrated to Unix
        time on the host, :mod:`._clock`)."""
        sig = types.uint64()

        def codegen(context, builder, sig, args):
            # inline PTX: this NVVM has no llvm.nvvm.read.ptx.sreg.globaltimer intrinsic (it
            # would be left as a call to an undefined function); side effect: every read
            # is a fresh one
            asm = ir.InlineAsm(ir.FunctionType(ir.IntType(64), ()),
                               "mov.u64 $0, %globaltimer;", "=l", side_effect=True)
            return builder.call(asm, ())
        return sig, codegen

    @intrinsic
    def sm_id(typingctx):
        """``%smid``: the multiprocessor running the thread (spreads records over copies)."""
        sig = types.uint32()

        def codegen(context, builder, sig, args):
            fnty = ir.FunctionType(ir.IntType(32), ())
            fn = cgutils.get_or_insert_function(builder.module, fnty,
                                                "llvm.nvvm.read.ptx.sreg.smid")
            return builder.call(fn, ())
        return sig, codegen

    _leader = cuda.jit(device=True, forceinline=True)(is_leader)

    @cuda.jit(device=True, forceinline=True)
    def _umax(a, b):
        """The larger of two int64 holding uint64 bits, compared unsigned."""
        return a if np.uint64(a) >= np.uint64(b) else b

    @cuda.jit(device=True, forceinline=True)
    def warp_inc(words, i):
        """``words[i] += 1`` for every active lane: one atomic per distinct ``i``."""
        mask = cuda.activemask()
        peers = cuda.match_any_sync(mask, np.int64(i))
        if _leader(peers, cuda.laneid):
            atomic_add_u64(words, i, np.uint64(cuda.popc(peers)))

    @cuda.jit(device=True, forceinline=True)
    def warp_add(words, i, n):
        """``words[i] += n`` for every active lane: one atomic per distinct ``i``."""
        mask = cuda.activemask()
        peers = cuda.match_any_sync(mask, np.int64(i))
        total = np.int64(0)
        rest = peers
        while rest:
            src = cuda.ffs(np.int32(rest)) - 1
            total += cuda.shfl_sync(peers, np.int64(n), src)
            rest &= rest - np.uint32(1)
        if _leader(peers, cuda.laneid):
            atomic_add_u64(words, i, np.uint64(total))

    @cuda.jit(device=True, forceinline=True)
    def warp_observe(words, total, high, low, v, key):
        """``words[total] += v``, ``words[high] = max(.., key)``, ``words[low] = max(..,
        ~key)`` for every active lane: the lanes that record into the same histogram slot
        (the same ``total`` word) gather their values, and the leader makes one f64 atomic
        add and two atomic maxes for them all.  A full warp gathers in 5 butterfly steps
        (``shfl.sync.bfly``: every lane ends with the same tree-ordered sum), a partial
        group one ``shfl.sync`` per peer in lane order."""
        mask = cuda.activemask()
        peers = cuda.match_any_sync(mask, np.int64(total))
        s = np.float64(v)
        hi = np.int64(key)
        lo = np.int64(~np.uint64(key))
        if np.uint32(peers) == np.uint32(0xFFFFFFFF):
            d = 16
            while d:
                s += cuda.shfl_xor_sync(peers, s, d)
                hi = _umax(hi, cuda.shfl_xor_sync(peers, hi, d))
                lo = _umax(lo, cuda.shfl_xor_sync(peers, lo, d))
                d >>= 1
        else:
            s = np.float64(0.0)
            hi = np.int64(0)
            lo = np.int64(0)
            rest = peers
            while rest:
                src = cuda.ffs(np.int32(rest)) - 1
                s += cuda.shfl_sync(peers, np.float64(v), src)
                hi = _umax(hi, cuda.shfl_sync(peers, np.int64(key), src))
                lo = _umax(lo, cuda.shfl_sync(peers, np.int64(~np.uint64(key)), src))
                rest &= rest - np.uint32(1)
        if _leader(peers, cuda.laneid):
            atomic_add_f64(words, total, s)
            atomic_max_u64(words, high, np.uint64(hi))
            atomic_max_u64(words, low, np.uint64(lo))

    @cuda.jit(device=True, forceinline=True)
    def fence():
        """``membar.gl``: the stores before it are seen before the stores after it."""
        cuda.threadfence()

    @cuda.jit(device=True, forceinline=True)
    def _where(NR):
        """(warp in its block, block's linear index, the warp's ring)."""
        tid = cuda.threadIdx.x + cuda.blockDim.x * (cuda.threadIdx.y
                                                    + cuda.blockDim.y * cuda.threadIdx.z)
        warp = np.int64(tid // 32)
        block = np.int64(cuda.blockIdx.x) + np.int64(cuda.gridDim.x) * (
            np.int64(cuda.blockIdx.y) + np.int64(cuda.gridDim.y) * np.int64(cuda.blockIdx.z))
        per_block = np.int64((cuda.blockDim.x * cuda.blockDim.y * cuda.blockDim.z + 31) // 32)
        return warp, block, (block * per_block + warp) % NR

    @cuda.jit(device=True, forceinline=True)
    def warp_emit(words, NR, CAP, SLOTS, w2, w3, w4, w5, w6, w7):
        """An event of every active lane into its warp's ring (:mod:`._device_tracer`): the
        lanes' positions claimed with one atomic from the lowest lane."""
        mask = cuda.activemask()
        lane = cuda.laneid
        warp, block, ring = _where(NR)
        first = cuda.ffs(np.int32(mask)) - 1
        base = np.int64(0)
        if lane == first:
            base = np.int64(atomic_add_u64(words, ring, np.uint64(cuda.popc(mask))))
        base = cuda.shfl_sync(mask, base, first)
        below = np.uint32(mask) & ((np.uint32(1) << np.uint32(lane)) - np.uint32(1))
        p = base + np.int64(cuda.popc(below))
        fill_slot(words, CAP, SLOTS, ring, p, warp, block, w2, w3, w4, w5, w6, w7)

    @cuda.jit(device=True, forceinline=True)
    def warp_span_begin(words, NR, STACKS, CAP, SLOTS, index, ok, on, w2, w5, w6, w7):
        """The active lanes of a warp open one span together: the lowest lane pushes it on
        its ring's stack and writes its begin with its own fields when the type is ``on``
        and they are in range (:func:`span_begin`); every lane gets its id.  Each lane
        with an argument out of range is counted."""
        mask = cuda.activemask()
        first = cuda.ffs(np.int32(mask)) - 1
        warp, block, ring = _where(NR)
        if not ok:
            atomic_add_u64(words, NR, 1)
        span = np.int64(0)
        if cuda.laneid == first:
            span = np.int64(span_begin(words, NR, STACKS, CAP, SLOTS, index, ring, warp,
                                       block, ok and on, w2, w5, w6, w7))
        return np.uint64(cuda.shfl_sync(mask, span, first))

    @cuda.jit(device=True, forceinline=True)
    def warp_span_end(words, NR, STACKS, CAP, SLOTS, index):
        """The active lanes of a warp close its innermost span together (the lowest lane:
        :func:`span_end`); True for every lane when the end was written."""
        mask = cuda.activemask()
        first = cuda.ffs(np.int32(mask)) - 1
        warp, block, ring = _where(NR)
        written = np.int32(0)
        if cuda.laneid == first:
            written = np.int32(span_end(words, NR, STACKS, CAP, SLOTS, index, ring, warp,
                                        block))
        return cuda.shfl_sync(mask, written, first) != 0


# --------------------------------------------------------------------------
# device tracers: one lane's slot and span bodies, for the GPU and the simulator
# --------------------------------------------------------------------------

MAX_DEPTH = _ring.MAX_DEPTH
RECORDED = _ring.RECORDED
#: words of a ring's span stack (see :mod:`._device_tracer`)
STACK_WORDS = 24
#: a type's switch word: 0 off, else on (see :mod:`._device_tracer`)
ALWAYS = 0xFFFFFFFFFFFFFFFF
S_OWNER, S_COUNT, S_DEPTH, S_TYPES, S_REFUSED, S_IDS = 0, 1, 2, 3, 5, 8


@device
def fill_slot(words, CAP, SLOTS, ring, p, warp, block, w2, w3, w4, w5, w6, w7):
    """Write the event at position ``p`` of ``ring`` (claimed by the caller): the slot, a
    fence, then its first word (position, warp, block), as :mod:`._device_tracer` says."""
    slot = SLOTS + (ring * CAP + (p & (CAP - 1))) * 8
    store_u64(words, slot + 1, global_timer())
    store_u64(words, slot + 2, np.uint64(w2) | (np.uint64(ring) << np.uint64(16)))
    store_u64(words, slot + 3, w3)
    store_u64(words, slot + 4, w4)
    store_u64(words, slot + 5, w5)
    store_u64(words, slot + 6, w6)
    store_u64(words, slot + 7, w7)
    fence()
    store_u64(words, slot, np.uint64(p & 0xFFFFFFFF) | (np.uint64(warp) << np.uint64(32))
              | (np.uint64(block) << np.uint64(38)))


@device
def _store_type(words, at, depth, value):
    word = at + (depth >> 3)
    shift = np.uint64((depth & 7) * 8)
    old = load_u64(words, word)
    store_u64(words, word, (old & ~(np.uint64(0xFF) << shift)) | (np.uint64(value) << shift))


@device
def _load_type(words, at, depth):
    return (load_u64(words, at + (depth >> 3)) >> np.uint64((depth & 7) * 8)) & np.uint64(0xFF)


@device
def span_begin(words, NR, STACKS, CAP, SLOTS, index, ring, warp, block, recorded, w2, w5, w6,
               w7):
    """One lane opens a span of type ``index`` for its warp; returns its id (0: none).

    The warp takes its ring's stack (compare-and-swap of its key into the owner
    word) unless it holds it already; a stack held by another warp refuses the
    span (counted).  Then as the CPU's ``span_begin``: too deep is counted and never
    written; the id comes from the ring's span count, the parent from the stack;
    the begin is written when ``recorded`` (its type on and its fields in range;
    a span of a type that is off is still pushed, so that its end closes it)."""
    st = STACKS + ring * STACK_WORDS
    me = ((np.uint64(block) << np.uint64(6)) | np.uint64(warp)) + np.uint64(1)
    if load_u64(words, st + S_OWNER) != me:
        if atomic_cas_u64(words, st + S_OWNER, np.uint64(0), me) != np.uint64(0):
            atomic_add_u64(words, NR + 1, 1)        # the ring's spans are another warp's
            atomic_add_u64(words, st + S_REFUSED, 1)    # (its end is expected)
            return np.uint64(0)
        fence()                 # taken: the stack as its last holder left it (fenced too)
    depth = np.int64(load_u64(words, st + S_DEPTH))
    if depth >= MAX_DEPTH:
        atomic_add_u64(words, NR, 1)                # too deep: counted, never written
        store_u64(words, st + S_DEPTH, depth + 1)
        return np.uint64(0)
    n = atomic_add_u64(words, st + S_COUNT, 1) + np.uint64(1)
    span = (np.uint64(ring + 1) << np.uint64(48)) | (n & np.uint64(0xFFFFFFFFFFFF))
    parent = np.uint64(0)
    if depth > 0:
        parent = load_u64(words, st + S_IDS + depth - 1)
    store_u64(words, st + S_IDS + depth, span)
    _store_type(words, st + S_TYPES, depth, index + (RECORDED if recorded else 0))
    store_u64(words, st + S_DEPTH, depth + 1)
    if recorded:
        p = np.int64(atomic_add_u64(words, ring, 1))
        flags = np.uint64(_FLAG_BEGIN | (depth << 2))
        fill_slot(words, CAP, SLOTS, ring, p, warp, block, np.uint64(w2) | (flags << np.uint64(8)),
                  span, parent, w5, w6, w7)
    return span


@device
def span_end(words, NR, STACKS, CAP, SLOTS, index, ring, warp, block):
    """One lane closes its warp's innermost span, which must be of type ``index``; True
    when the end was written.  A warp that holds no span on its ring changes nothing: its
    end takes the place of a begin refused on the ring (counted then) while one is
    unmatched, else it is an end without a begin, counted as invalid.  An end of another
    type than the innermost span is counted and changes nothing.  The last end gives
    the ring's stack back."""
    st = STACKS + ring * STACK_WORDS
    me = ((np.uint64(block) << np.uint64(6)) | np.uint64(warp)) + np.uint64(1)
    if load_u64(words, st + S_OWNER) != me:
        left = load_u64(words, st + S_REFUSED)
        while left > np.uint64(0):
            seen = atomic_cas_u64(words, st + S_REFUSED, left, left - np.uint64(1))
            if seen == left:
                return False                        # the end of a refused begin
            left = seen
        atomic_add_u64(words, NR, 1)                # an end without a begin
        return False
    depth = np.int64(load_u64(words, st + S_DEPTH)) - 1
    if depth >= MAX_DEPTH:                          # the end of a begin that was too deep
        store_u64(words, st + S_DEPTH, depth)
        return False
    written = False
    if depth < 0:
        atomic_add_u64(words, NR, 1)                # an end without a begin
    else:
        t = _load_type(words, st + S_TYPES, depth)
        if (t & np.uint64(0x7F)) != np.uint64(index):
            atomic_add_u64(words, NR, 1)            # not the innermost open span's type
            return False
        store_u64(words, st + S_DEPTH, depth)
        if t & np.uint64(RECORDED):
            p = np.int64(atomic_add_u64(words, ring, 1))
            flags = np.uint64(_FLAG_END | (depth << 2))
            fill_slot(words, CAP, SLOTS, ring, p, warp, block,
                      np.uint64(index) | (flags << np.uint64(8)),
                      load_u64(words, st + S_IDS + depth), np.uint64(0), np.uint64(0),
                      np.uint64(0), np.uint64(0))
            written = True
    if depth <= 0:
        fence()
        store_u64(words, st + S_OWNER, np.uint64(0))   # the warp's last span: stack free
    return written
