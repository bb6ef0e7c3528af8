"""Per-thread overwrite rings with per-slot sequence numbers (a seqlock per slot).

Data area of a tracer region (byte offsets, lines of 64 bytes)::

    0     thresholds  u64[4]   per event type, read by every record (see .config)
    32    clock       u64      0 = TSC ticks, 1 = CLOCK_MONOTONIC ns
    40    capacity    u64      slots per ring (a power of two)
    48    rings       u64      number of rings
    64    tsc_ref     u64      TSC at creation             } the long baseline that
    72    mono_ref    u64      CLOCK_MONOTONIC at creation } measures the TSC rate
    80    unix_ref    u64      unix ns at creation
    88    anchor_ver  u64      seqlock version of the anchor below (0: none yet)
    96    anchor_tsc  u64      } published by the owner at every drain (clock.Anchor):
    104   anchor_unix u64      } the TSC rate, measured over the whole life of the
    112   anchor_mult u64      } tracer, as ns = (ticks * mult) >> shift; every process
    120   anchor_shift u64     } converts with it, anchored at its own present
    128   no_ring     u64      events dropped: every ring was owned by another thread
    136   invalid     u64      events dropped: an enum argument out of range
    256   ring headers, 192 B each:
            +0    owner        u64   pthread id of the ring's producer (0 = free)  [claim line]
            +8    owner_pid    u64   process id of the ring's producer             [claim line]
            +64   write_index  u64   events written so far                         [producer line]
            +72   rng          u64   xorshift state for sampling                   [producer line]
            +128  read_index   u64   events consumed by the primary consumer      [consumer line]
            +136  delivered    u64                                                 [consumer line]
            +144  dropped      u64   overwritten before being read, or torn       [consumer line]
    slots: ring r, position p -> slots + (r * capacity + (p & (capacity - 1))) * 64

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
"""

from __future__ import annotations

import numpy as np
from numba import njit

from .._atomics import (add_u64, fence_acquire, fence_release, load_u64, load_u64_acquire,
                        store_u64, store_u64_release, thread_id)
from .._claim import claim, release
from ..clock import cycles, monotonic_ns

TH_OFF = 0
CLOCK_OFF = 32
CAP_OFF = 40
RINGS_OFF = 48
TSC_REF_OFF = 64
MONO_REF_OFF = 72
UNIX_REF_OFF = 80
ANCHOR_VER_OFF = 88
ANCHOR_TSC_OFF = 96
ANCHOR_UNIX_OFF = 104
ANCHOR_MULT_OFF = 112
ANCHOR_SHIFT_OFF = 120
NO_RING_OFF = 128
INVALID_OFF = 136
RING_HEADERS = 256
RING_HEADER_SIZE = 192
R_OWNER = 0
R_WRITE = 64
R_RNG = 72
R_READ = 128
R_DELIVERED = 136
R_DROPPED = 144
SLOT = 64
WORDS = SLOT // 8

CLOCK_TSC = 0
CLOCK_MONOTONIC = 1
ALWAYS = np.uint64(0xFFFFFFFFFFFFFFFF)
_ONE = np.uint64(1)
_TWO = np.uint64(2)


@njit
def slots_offset(n_rings):
    end = RING_HEADERS + RING_HEADER_SIZE * n_rings
    return (end + SLOT - 1) // SLOT * SLOT


def region_size(n_rings: int, capacity: int) -> int:
    """Bytes of the data area (Python integers: no overflow for any input)."""
    end = RING_HEADERS + RING_HEADER_SIZE * n_rings
    return -(-end // SLOT) * SLOT + n_rings * capacity * SLOT


# -- producer ----------------------------------------------------------------------

@njit
def claim_ring(base, pid, n_rings):
    """Index of the calling thread's ring, claiming a free one; -1 when all are taken.

    Rings are keyed by (pthread id, process id) (see :mod:`engram_numba._claim`)
    and kept until released: a ring never has two live producers, even across
    processes sharing a file or a forked child.
    """
    return claim(base + RING_HEADERS + R_OWNER, RING_HEADER_SIZE, n_rings, thread_id(), pid)


@njit
def release_ring(base, pid, n_rings):
    """Give the calling thread's ring back (it must not record into it any more).

    Safe because the caller is the ring's only producer: the consumer reads by
    write index, whoever owns the ring, and the next owner continues from there.
    Returns the released ring, or -1 if the thread held none.
    """
    return release(base + RING_HEADERS + R_OWNER, RING_HEADER_SIZE, n_rings, thread_id(), pid)


@njit(nogil=True, cache=True)
def py_release_ring(base, pid, n_rings):
    return release_ring(base, pid, n_rings)


@njit
def _sampled(header, thresh):
    """Keep this event?  ALWAYS keeps without a draw; else a xorshift64 draw < thresh."""
    if thresh == ALWAYS:
        return True
    x = load_u64(header + R_RNG)
    x ^= x << np.uint64(13)
    x ^= x >> np.uint64(7)
    x ^= x << np.uint64(17)
    store_u64(header + R_RNG, x)
    return x < thresh


@njit
def _now(clock):
    if clock == CLOCK_TSC:
        return cycles()
    return np.uint64(monotonic_ns())


@njit
def threshold(base, event_type):
    """The event type's threshold word: 0 = off (see .config)."""
    return load_u64(base + TH_OFF + 8 * event_type)


@njit
def count_invalid(base):
    add_u64(base + INVALID_OFF, _ONE)


@njit
def emit(base, pid, n_rings, capacity, clock, thresh, w2, w3, w4, w5):
    """Record one event into the calling thread's ring; True if it was written.

    ``thresh`` is the type's non-zero threshold; ``w2`` holds bytes 16..23 (type,
    subtype, f32; the ring id is added here), ``w3``..``w5`` bytes 24..47.
    """
    ring = claim_ring(base, pid, n_rings)
    if ring < 0:
        add_u64(base + NO_RING_OFF, _ONE)
        return False
    header = base + RING_HEADERS + RING_HEADER_SIZE * ring
    if not _sampled(header, thresh):
        return False
    ts = _now(clock)
    p = load_u64(header + R_WRITE)
    index = np.uint64(ring) * np.uint64(capacity) + (p & np.uint64(capacity - 1))
    slot = base + slots_offset(n_rings) + index * np.uint64(SLOT)
    store_u64(slot, _TWO * p + _ONE)
    fence_release()
    store_u64(slot + 8, ts)
    store_u64(slot + 16, w2 | (np.uint64(ring) << np.uint64(16)))
    store_u64(slot + 24, w3)
    store_u64(slot + 32, w4)
    store_u64(slot + 40, w5)
    store_u64_release(slot, _TWO * p + _TWO)
    store_u64_release(header + R_WRITE, p + _ONE)
    return True


# -- consumer ----------------------------------------------------------------------

@njit(nogil=True, cache=True)
def collect_ring(base, n_rings, capacity, ring, start, stop, out, k):
    """Copy the complete events at positions [start, stop) of ``ring`` into ``out[k:]``.

    ``out`` is a uint64 array of 8 words per event.  Returns (new k, dropped).
    Positions must lie within one capacity of the ring's write index.
    """
    slots = base + slots_offset(n_rings) + np.uint64(ring) * np.uint64(capacity) * np.uint64(SLOT)
    mask = np.uint64(capacity - 1)
    dropped = 0
    for p in range(start, stop):
        pos = np.uint64(p)
        slot = slots + (pos & mask) * np.uint64(SLOT)
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
        k += 1
    return k, dropped


@njit(nogil=True, cache=True)
def ring_positions(base, n_rings):
    """(write_index, read_index) of every ring, loaded with acquire."""
    out = np.empty((n_rings, 2), dtype=np.uint64)
    for r in range(n_rings):
        header = base + RING_HEADERS + RING_HEADER_SIZE * r
        out[r, 0] = load_u64_acquire(header + R_WRITE)
        out[r, 1] = load_u64(header + R_READ)
    return out
