"""Per-thread overwrite rings with per-slot sequence numbers (a seqlock per slot).

Data area of a tracer region (byte offsets; ``T`` = number of declared types)::

    0     rings       u64      number of rings
    8     capacity    u64      slots per ring (a power of two)
    16    clock       u64      0 = TSC ticks, 1 = CLOCK_MONOTONIC ns
    24    types       u64      T
    32    tsc_ref     u64      TSC at creation             } the baseline that
    40    mono_ref    u64      CLOCK_MONOTONIC at creation } measures the TSC rate
    48    unix_ref    u64      unix ns at creation
    56    tracer_id   u64      random, nonzero: half of every OTLP trace id
    64    anchor_ver  u64      seqlock version of the anchor below (0: none yet)
    72    anchor_tsc  u64      } published by the owner at every drain (clock.Anchor):
    80    anchor_unix u64      } the TSC rate measured over the whole life of the
    88    anchor_mult u64      } tracer, ns = (ticks * mult) >> shift; every process
    96    anchor_shift u64     } converts with it, anchored at its own present
    104   ext_parent  u64      span id of the explicit parent of root spans (tracer.parent),
                               0 = none: a span begun with no open span on its thread
                               takes it as parent
    112   ext_count   u64      contexts written to the context table so far
    120   (unused)
    128   no_ring     u64      events dropped: every ring was owned by another thread
    136   invalid     u64      events dropped: an argument out of range, a span end
                               without its begin, a span beyond the stack depth
    192   thresholds  u64[T]   per type, read by every record (see .config), padded to 64
    TH    ring headers, RING_HEADER_SIZE bytes each:
            +0    owner        u64   pthread id of the ring's producer (0 = free)  [claim line]
            +8    owner_pid    u64   its process id (see .._claim)                 [claim line]
            +16   os_tid       u64   the producer's OS thread id                   [claim line]
            +24   since        u64   the write index when it claimed the ring      [claim line]
            +32   prev_os_tid  u64   the previous producer's OS thread id          [claim line]
            +64   write_index  u64   events written so far                         [producer]
            +72   rng          u64   xorshift state for sampling                   [producer]
            +80   span_count   u64   spans begun on this ring (their ids)          [producer]
            +88   depth        u64   open spans of the ring's thread               [producer]
            +96   root_parent  u64   parent of the thread's outermost open span     [producer]
                                     (tracer.parent's span id, or 0)
            +104  inherited    u64   while the ring's thread runs a chunk of a      [producer]
                                     parallel region: the span open on the thread
                                     that entered the region (see ._prange), else 0;
                                     a span begun with no open span on its thread
                                     takes it as parent, before ext_parent
            +112  announce     u64   while the ring's thread runs a chunk of a      [producer]
                                     parallel region with no span open: the span its
                                     instant events belong to, until its first event
                                     writes a context record saying so (then 0)
            +120  contexts     u64   context records written (see ._prange); readers [producer]
                                     give the thread's instant events their span and
                                     never return them
            +128  read_index   u64   events consumed by the primary consumer      [consumer]
            +136  delivered    u64                                                 [consumer]
            +144  dropped      u64   overwritten before being read, or torn       [consumer]
            +152  peak         u64   most events found waiting at one drain        [consumer]
                                     (more than the capacity: some were overwritten)
            +160  version      u64   seqlock of the consumer words above (odd while
                                     a drain updates them)                         [consumer]
            +192  span ids     u64[MAX_DEPTH]  the thread's open spans            [producer]
            +320  span types   u8[MAX_DEPTH]   their types; bit 7 set when the begin was written
    slots: ring r, position p -> slots + (r * capacity + (p & (capacity - 1))) * 64
    CT    context table, N_CONTEXTS entries of 32 bytes (span id, trace id high and low
          halves, unused), written round robin by tracer.parent: the 128-bit trace id
          of an explicit parent, which its children's trace takes (the begin event
          has room for the parent's span id only)

Protocol (one producer per ring; it never writes a consumer word):

    producer, event at position p = write_index:
        slot.sequence = 2p + 1                 (odd: being written)
        release fence
        payload words
        slot.sequence = 2p + 2      (release)  (even: position p complete)
        write_index = p + 1         (release)

    consumer, positions [r, w) with w = write_index (acquire):
        positions older than w - capacity were overwritten: dropped
        for each p: s1 = slot.sequence (acquire); if s1 != 2p + 2: dropped
                    copy the payload (relaxed atomic loads)
                    acquire fence; s2 = slot.sequence; if s2 != s1: torn, dropped
                    else delivered

Every position below w ends up delivered or dropped, exactly once, so
``written = delivered + dropped`` holds for every ring after every drain.  All
racy accesses are atomic (relaxed or stronger), so the protocol is free of
data races in the C++ memory model as well as on x86.

Loss is visible the moment it happens, with no cost to the producer: the
positions in ``[read_index, write_index - capacity)`` have been overwritten
before anyone read them, so :func:`ring_stats` counts them as dropped at once
(``dropped`` word plus that gap) and ``pending`` never exceeds the capacity.

The OS thread id of a ring's producer is written when a thread claims the
ring (one system call per claim, never per event), with the write index at
that moment, so a reader gives each event the id of the thread that wrote it
(for the ring's last two owners; the owning process also remembers the owners
that gave the ring back from Python, see ._threads).

A span's id is ``(ring + 1) << 48 | n`` for the ring's n-th span: unique within
the tracer without any shared counter.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from .._addr import (add_u64, fence_acquire, fence_release, load_u64, load_u64_acquire,
                     store_u64, store_u64_release, thread_id, unlikely)
from .._claim import owns, release
from .._inline import always_inline, never_inline
from ..clock import read_cycles, read_monotonic_ns
from .schema import FLAG_BEGIN, FLAG_CONTEXT, FLAG_END

RINGS_OFF = 0
CAP_OFF = 8
CLOCK_OFF = 16
TYPES_OFF = 24
TSC_REF_OFF = 32
MONO_REF_OFF = 40
UNIX_REF_OFF = 48
TRACER_ID_OFF = 56
ANCHOR_VER_OFF = 64
ANCHOR_TSC_OFF = 72
ANCHOR_UNIX_OFF = 80
ANCHOR_MULT_OFF = 88
ANCHOR_SHIFT_OFF = 96
NO_RING_OFF = 128
INVALID_OFF = 136
EXT_PARENT_OFF = 104
EXT_COUNT_OFF = 112
N_CONTEXTS = 256
CONTEXT_SIZE = 32
TH_OFF = 192
R_OWNER = 0
R_OS_TID = 16
R_SINCE = 24
R_PREV_OS_TID = 32
R_WRITE = 64
R_RNG = 72
R_SPANS = 80
R_DEPTH = 88
R_ROOT_PARENT = 96
R_INHERITED = 104
R_ANNOUNCE = 112
R_CONTEXTS = 120
R_READ = 128
R_DELIVERED = 136
R_DROPPED = 144
R_PEAK = 152
R_VERSION = 160
#: what a claim of a ring writes about its thread (see .._claim._claim_function)
CLAIM_THREAD_WORDS = (R_OS_TID - R_OWNER, R_SINCE - R_OWNER, R_PREV_OS_TID - R_OWNER,
                      R_WRITE - R_OWNER)
R_STACK_IDS = 192
MAX_DEPTH = 16
R_STACK_TYPES = R_STACK_IDS + 8 * MAX_DEPTH
RING_HEADER_SIZE = 384
SLOT = 64
WORDS = SLOT // 8
RECORDED = 0x80              # span-type byte: the begin event was written

CLOCK_TSC = 0
CLOCK_MONOTONIC = 1
ALWAYS = np.uint64(0xFFFFFFFFFFFFFFFF)
_ONE = np.uint64(1)
_TWO = np.uint64(2)
_16 = np.uint64(16)
_RING_BITS = np.uint64(0xFFFF << 16)           # bytes 18-19 of a slot's word 2
CONTEXT_W2 = np.uint64(FLAG_CONTEXT << 8)      # a context record's type and flags bytes


def ring_headers_offset(n_types: int) -> int:
    return TH_OFF + -(-8 * n_types // 64) * 64


def slots_offset(n_types: int, n_rings: int) -> int:
    end = ring_headers_offset(n_types) + RING_HEADER_SIZE * n_rings
    return -(-end // SLOT) * SLOT


def contexts_offset(n_types: int, n_rings: int, capacity: int) -> int:
    return slots_offset(n_types, n_rings) + n_rings * capacity * SLOT


def region_size(n_types: int, n_rings: int, capacity: int) -> int:
    """Bytes of the data area (Python integers: no overflow for any input)."""
    return contexts_offset(n_types, n_rings, capacity) + N_CONTEXTS * CONTEXT_SIZE


def external_traces(words: np.ndarray, n_types: int, n_rings: int, capacity: int) -> dict:
    """``{span id: 128-bit trace id}`` of the explicit parents still in the context table."""
    first = contexts_offset(n_types, n_rings, capacity) // 8
    table = words[first:first + N_CONTEXTS * CONTEXT_SIZE // 8].reshape(N_CONTEXTS, -1)
    return {int(s): int(hi) << 64 | int(lo) for s, hi, lo in table[:, :3].tolist() if s}


def header_word(offset: int, ring: int | None = None, n_types: int = 0) -> int:
    """Index (in u64 words) of a tracer-header field, or of a ring-header field of ``ring``."""
    if ring is None:
        return offset // 8
    return (ring_headers_offset(n_types) + RING_HEADER_SIZE * ring + offset) // 8


def initialise(words: np.ndarray, n_types: int, n_rings: int, capacity: int, clock: int,
               thresholds, refs: tuple, tracer_id: int) -> None:
    """Write a new tracer's header (its data area is zero)."""
    words[RINGS_OFF // 8] = n_rings
    words[CAP_OFF // 8] = capacity
    words[CLOCK_OFF // 8] = clock
    words[TYPES_OFF // 8] = n_types
    words[TSC_REF_OFF // 8], words[MONO_REF_OFF // 8], words[UNIX_REF_OFF // 8] = refs
    words[TRACER_ID_OFF // 8] = tracer_id
    words[TH_OFF // 8:TH_OFF // 8 + n_types] = thresholds
    seeds = np.random.SeedSequence().generate_state(n_rings, dtype=np.uint64) | np.uint64(1)
    for r in range(n_rings):
        words[header_word(R_RNG, r, n_types)] = seeds[r]


def reset_rings(words: np.ndarray, n_types: int, n_rings: int) -> None:
    """Empty rings with no owners (a forked child's private copy of anonymous rings)."""
    for r in range(n_rings):
        for off in (R_OWNER, R_OWNER + 8, R_OS_TID, R_SINCE, R_PREV_OS_TID, R_WRITE, R_READ,
                    R_DELIVERED, R_DROPPED, R_PEAK, R_VERSION, R_DEPTH, R_INHERITED):
            words[header_word(off, r, n_types)] = 0
    words[NO_RING_OFF // 8] = 0
    words[INVALID_OFF // 8] = 0


def consumer_words(words: np.ndarray, head: int) -> tuple:
    """(read_index, delivered, dropped, peak) of the ring whose header starts at word
    ``head``, consistent with each other (read under the consumer's seqlock)."""
    def read():
        return tuple(int(words[head + off // 8]) for off in (R_READ, R_DELIVERED, R_DROPPED,
                                                              R_PEAK))
    for _ in range(1000):
        v1 = int(words[head + R_VERSION // 8])
        if v1 & 1:
            continue
        out = read()
        if int(words[head + R_VERSION // 8]) == v1:
            return out
    return read()                  # a consumer stuck mid-update (killed): its last words


def ring_stats(words: np.ndarray, n_types: int, n_rings: int, capacity: int) -> list:
    """written / delivered / dropped / pending / utilization of every ring in use.

    The figures count ring records: events, and the context records of parallel
    regions (``contexts`` of them were written, see ._prange).  Overwritten events count as dropped the moment they are overwritten (see the
    module docstring), so ``written == delivered + dropped + pending`` at any time
    and ``pending`` is at most the capacity.  ``peak_utilization`` is the fullest
    a drain found the ring (100 when events were overwritten).
    """
    rings = []
    for r in range(n_rings):
        head = header_word(0, r, n_types)
        written = int(words[head + R_WRITE // 8])
        if not written and not words[head + R_OWNER // 8]:
            continue
        read, delivered, dropped, peak = consumer_words(words, head)
        written = max(written, read)
        waiting = written - read
        lapped = max(0, waiting - capacity)
        pending = waiting - lapped
        rings.append({"ring": r, "written": written, "delivered": delivered,
                      "dropped": dropped + lapped, "overwritten_unread": lapped,
                      "pending": pending,
                      "utilization": 100.0 * pending / capacity,
                      "peak_utilization": 100.0 * min(max(peak, waiting), capacity) / capacity,
                      "contexts": int(words[head + R_CONTEXTS // 8]),
                      "thread": int(words[head + R_OS_TID // 8])})
    return rings


def open_spans(words: np.ndarray, n_types: int, n_rings: int) -> list:
    """``(ring, depth, span id, type index, recorded)`` of every span begun and not ended."""
    out = []
    for r in range(n_rings):
        depth = int(words[header_word(R_DEPTH, r, n_types)])
        ids = header_word(R_STACK_IDS, r, n_types)
        types = words[ids + MAX_DEPTH:ids + MAX_DEPTH + 2].view(np.uint8)
        for d in range(min(depth, MAX_DEPTH)):
            out.append((r, d, int(words[ids + d]), int(types[d] & 0x7F),
                        bool(types[d] & RECORDED)))
    return out


# -- producer ----------------------------------------------------------------------------------

@njit(cache=True)
def release_ring(base, pid, th_end, n_rings):
    """Give the calling thread's ring back (it must not record into it any more).

    Safe because the caller is the ring's only producer: the consumer reads by
    write index, whoever owns the ring, and the next owner continues from there.
    Returns the released ring, or -1 if the thread held none.
    """
    return release(base + th_end + R_OWNER, RING_HEADER_SIZE, n_rings, thread_id(), pid)


@njit(cache=True)
def release_ring_of(base, pid, th_end, n_rings, tid):
    """Give back the ring of thread ``tid`` (pthread id) of process ``pid``, as it ends;
    returns the ring, or -1 if it held none."""
    return release(base + th_end + R_OWNER, RING_HEADER_SIZE, n_rings, tid, pid)


@njit(nogil=True, cache=True)
def py_thread_ring(base, pid, th_end, n_rings):
    """The ring the calling thread owns, or -1."""
    tid = np.uint64(thread_id())
    for i in range(n_rings):
        if owns(base + th_end + R_OWNER + RING_HEADER_SIZE * i, tid, np.uint64(pid)):
            return np.int64(i)
    return np.int64(-1)


def thread_context(words: np.ndarray, n_types: int, ring: int) -> tuple:
    """(innermost open span id, outermost open span id, its parent) of ``ring``'s thread;
    zeros when it has no open span."""
    depth = min(int(words[header_word(R_DEPTH, ring, n_types)]), MAX_DEPTH)
    if depth == 0:
        return 0, 0, 0
    ids = header_word(R_STACK_IDS, ring, n_types)
    return (int(words[ids + depth - 1]), int(words[ids]),
            int(words[header_word(R_ROOT_PARENT, ring, n_types)]))


@njit(nogil=True, cache=True)
def py_release_ring(base, pid, th_end, n_rings):
    return release_ring(base, pid, th_end, n_rings)


# numpy constants of the producer code, made once: written as np.uint64(...) inside a
# compiled function, each is a call that numba types again whenever the function compiles
_ZERO = np.uint64(0)
_SEVEN = np.uint64(7)
_EIGHT = np.uint64(8)
_48 = np.uint64(48)
_BYTE = np.uint64(0xFF)
_TYPE_BITS = np.uint64(0x7F)
_RECORDED = np.uint64(RECORDED)
_SPAN_NUMBER = np.uint64(0xFFFFFFFFFFFF)     # the low 48 bits of a span id
_SLOT = np.uint64(SLOT)
_XS_A, _XS_B, _XS_C = np.uint64(13), np.uint64(7), np.uint64(17)    # xorshift64's shifts


@always_inline
@njit(cache=True)
def sampled(header, thresh):
    """Keep this event?  ALWAYS keeps without a draw; else a xorshift64 draw < thresh."""
    if thresh == ALWAYS:
        return True
    x = load_u64(header + R_RNG)
    x ^= x << _XS_A
    x ^= x >> _XS_B
    x ^= x << _XS_C
    store_u64(header + R_RNG, x)
    return x < thresh


@always_inline
@njit(cache=True)
def write_slot(base, slots, header, ring, capacity, clock, w2, w3, w4, w5, w6, w7):
    """Write one event into ``ring`` (owned by the caller): the seqlock protocol above."""
    ts = read_cycles() if clock == CLOCK_TSC else np.uint64(read_monotonic_ns())
    p = load_u64(header + R_WRITE)
    index = np.uint64(ring) * np.uint64(capacity) + (p & np.uint64(capacity - 1))
    slot = base + slots + index * _SLOT
    store_u64(slot, _TWO * p + _ONE)
    fence_release()
    store_u64(slot + 8, ts)
    store_u64(slot + 16, w2 | (np.uint64(ring) << _16))
    store_u64(slot + 24, w3)
    store_u64(slot + 32, w4)
    store_u64(slot + 40, w5)
    store_u64(slot + 48, w6)
    store_u64(slot + 56, w7)
    store_u64_release(slot, _TWO * p + _TWO)
    store_u64_release(header + R_WRITE, p + _ONE)


@njit(cache=True)
def context_record(base, slots, header, ring, capacity, clock, span):
    """Write a context record (see ._prange): from here on, the ring's instant events with
    no span open belong to ``span`` (0: to none); nothing is left to announce."""
    write_slot(base, slots, header, ring, capacity, clock, CONTEXT_W2, span, _ZERO, _ZERO,
               _ZERO, _ZERO)
    store_u64(header + R_CONTEXTS, load_u64(header + R_CONTEXTS) + _ONE)
    store_u64(header + R_ANNOUNCE, _ZERO)


#: the first instant event of a parallel region's chunk announces its span (a cold call)
announce = never_inline(context_record)


@always_inline
@njit(cache=True)
def emit(base, ring, th_end, slots, capacity, clock, thresh, w2, w3, w4, w5, w6, w7):
    """Record one event into the calling thread's ring; True if it was written.

    ``thresh`` is the type's non-zero threshold; ``w2`` holds bytes 16..23 (type,
    flags, payload bytes 20..23; the ring id is added here), ``w3``..``w7``
    bytes 24..63.
    """
    if ring < 0:
        add_u64(base + NO_RING_OFF, _ONE)
        return False
    header = base + th_end + RING_HEADER_SIZE * ring
    if not sampled(header, thresh):
        return False
    pending = load_u64(header + R_ANNOUNCE)
    if unlikely(pending != 0):               # a parallel region's span, not yet announced
        announce(base, slots, header, ring, capacity, clock, pending)
    write_slot(base, slots, header, ring, capacity, clock, w2, w3, w4, w5, w6, w7)
    return True


@always_inline
@njit(cache=True)
def span_begin(base, ring, th_end, slots, capacity, clock, type_index, thresh, w2, w5, w6,
               w7):
    """Open a span of ``type_index`` on the calling thread; returns its id (0 if none).

    Pushes the span on the ring's stack (always, so its end matches) and writes
    the begin event when the type is on (``thresh`` non-zero) and sampled.  ``w2`` carries the type
    and begin flag, ``w5``..``w7`` the declared fields (bytes 40..63); the span
    id and parent id go to bytes 24..39, the depth into the flags.
    """
    if ring < 0:
        add_u64(base + NO_RING_OFF, _ONE)
        return _ZERO
    header = base + th_end + RING_HEADER_SIZE * ring
    depth = load_u64(header + R_DEPTH)
    if depth >= MAX_DEPTH:
        add_u64(base + INVALID_OFF, _ONE)  # too deep: counted, never written
        store_u64(header + R_DEPTH, depth + _ONE)
        return _ZERO
    n = load_u64(header + R_SPANS) + _ONE
    store_u64(header + R_SPANS, n)
    span_id = (np.uint64(ring + 1) << _48) | (n & _SPAN_NUMBER)
    if depth > 0:
        parent = load_u64(header + R_STACK_IDS + 8 * (depth - _ONE))
    else:
        parent = load_u64(header + R_INHERITED)  # a parallel region's launcher span, or 0
        if parent == 0:
            parent = load_u64(base + EXT_PARENT_OFF)     # tracer.parent's span, or 0
        store_u64(header + R_ROOT_PARENT, parent)
    recorded = thresh != 0 and sampled(header, thresh)
    store_u64(header + R_STACK_IDS + 8 * depth, span_id)
    _store_type(header, depth, type_index | (RECORDED if recorded else 0))
    store_u64(header + R_DEPTH, depth + _ONE)
    if recorded:
        flags = np.uint64(FLAG_BEGIN | (depth << _TWO))
        write_slot(base, slots, header, ring, capacity, clock, w2 | (flags << _EIGHT),
                   span_id, parent, w5, w6, w7)
    return span_id


@always_inline
@njit(cache=True)
def span_end(base, ring, th_end, slots, capacity, clock, type_index, w2):
    """Close the calling thread's innermost span, which must be of ``type_index``.

    An end without a begin of this type at the top of the stack is counted as
    invalid and changes nothing.  The end event is written when the begin was
    (whatever the type's switch says now).  Returns True when it was written.
    """
    if ring < 0:
        add_u64(base + NO_RING_OFF, _ONE)
        return False
    header = base + th_end + RING_HEADER_SIZE * ring
    depth = load_u64(header + R_DEPTH)
    if depth == 0:
        add_u64(base + INVALID_OFF, _ONE)  # an end without a begin
        return False
    depth -= _ONE
    if depth >= MAX_DEPTH:                   # the end of a begin that was too deep
        store_u64(header + R_DEPTH, depth)
        return False
    t = _load_type(header, depth)
    if (t & _TYPE_BITS) != type_index:
        add_u64(base + INVALID_OFF, _ONE)  # not the innermost open span's type
        return False
    store_u64(header + R_DEPTH, depth)
    if t & _RECORDED:
        span_id = load_u64(header + R_STACK_IDS + 8 * depth)
        flags = np.uint64(FLAG_END | (depth << _TWO))
        write_slot(base, slots, header, ring, capacity, clock, w2 | (flags << _EIGHT),
                   span_id, _ZERO, _ZERO, _ZERO, _ZERO)
        return True
    return False


# The span's type byte in the stack of open spans.  Kept as two functions: written out in
# span_begin and span_end, LLVM laid out the span's code differently (and it measured ~1%
# slower in benchmarks/tracing_overhead.py).
@always_inline
@njit(cache=True)
def _store_type(header, depth, value):
    word = header + R_STACK_TYPES + (depth & ~_SEVEN)
    shift = (depth & _SEVEN) * _EIGHT
    old = load_u64(word)
    new = (old & ~(_BYTE << shift)) | (np.uint64(value) << shift)
    store_u64(word, new)


@always_inline
@njit(cache=True)
def _load_type(header, depth):
    word = header + R_STACK_TYPES + (depth & ~_SEVEN)
    return (load_u64(word) >> ((depth & _SEVEN) * _EIGHT)) & _BYTE


# -- consumer ----------------------------------------------------------------------------------
# These keep the GIL: they take microseconds, and a collector thread that released it
# would wait for busy exporter threads to hand it back after every call.

@njit(cache=True)
def collect_ring(base, slots, capacity, ring, start, stop, out, k):
    """Copy the complete events at positions [start, stop) of ``ring`` into ``out[k:]``.

    ``out`` is a uint64 array of 8 words per event.  Returns (new k, dropped).
    Positions must lie within one capacity of the ring's write index.
    """
    first = base + slots + np.uint64(ring) * np.uint64(capacity) * np.uint64(SLOT)
    mask = np.uint64(capacity - 1)
    dropped = 0
    for p in range(start, stop):
        pos = np.uint64(p)
        slot = first + (pos & mask) * np.uint64(SLOT)
        expected = _TWO * pos + _TWO
        if load_u64_acquire(slot) != expected:
            dropped += 1          # overwritten by a newer lap, or being written
            continue
        for w in range(1, WORDS):
            out[k * WORDS + w] = load_u64(slot + 8 * w)
        fence_acquire()
        if load_u64(slot) != expected:
            dropped += 1          # torn: the producer lapped us during the copy
            continue
        out[k * WORDS] = pos
        # the ring it came from, as the reader knows it (a damaged file's slot may say else)
        out[k * WORDS + 2] = (out[k * WORDS + 2] & ~_RING_BITS) | (np.uint64(ring) << _16)
        k += 1
    return k, dropped


@njit(cache=True)
def finish_drain(base, th_end, n_rings, starts, writes, got, dropped):
    """The primary consumer's account of a drain of positions [starts, writes), per ring:
    ``got`` delivered, ``dropped`` lost; under the consumer seqlock (see ring_stats)."""
    for r in range(n_rings):
        if writes[r] == starts[r]:
            continue
        header = base + th_end + RING_HEADER_SIZE * r
        version = load_u64(header + R_VERSION)
        store_u64(header + R_VERSION, version + _ONE)
        fence_release()
        store_u64(header + R_DELIVERED, load_u64(header + R_DELIVERED) + np.uint64(got[r]))
        store_u64(header + R_DROPPED, load_u64(header + R_DROPPED) + np.uint64(dropped[r]))
        waiting = np.uint64(writes[r] - starts[r])
        if waiting > load_u64(header + R_PEAK):
            store_u64(header + R_PEAK, waiting)
        store_u64_release(header + R_READ, np.uint64(writes[r]))
        store_u64_release(header + R_VERSION, version + _TWO)


@njit(cache=True)
def ring_positions(base, th_end, n_rings):
    """(write_index, read_index) of every ring, loaded with acquire."""
    out = np.empty((n_rings, 2), dtype=np.uint64)
    for r in range(n_rings):
        header = base + th_end + RING_HEADER_SIZE * r
        out[r, 0] = load_u64_acquire(header + R_WRITE)
        out[r, 1] = load_u64(header + R_READ)
    return out
