"""Lock-free per-thread claim tables: which entry of a table belongs to this thread.

A table is ``n`` owner words, ``stride`` bytes apart, each 0 (free) or the
``pthread_self()`` of the thread that claimed it.  A thread starts probing at a
hash of its id, takes the entry it already owns or CASes a free one, and gives
up after ``n`` probes.  Entries are never taken from a live thread; a new
thread that inherits a dead thread's id inherits its entries.  Trace rings use
this (an entry per ring, no fallback: a ring must have one producer) and
sharded metric sets (a full table falls back to the hash: sharing a shard is
still exact).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from ._atomics import cas_u64, load_u64, thread_id

_HASH = np.uint64(0x9E3779B97F4A7C15)


@njit
def home(tid, n):
    """Where a thread starts probing a table of ``n`` entries."""
    return np.int64(((tid * _HASH) >> np.uint64(32)) % np.uint64(n))


@njit
def claim(table, stride, n):
    """Index of the calling thread's entry (claimed if needed), or -1 if all are taken."""
    tid = thread_id()
    i = home(tid, n)
    for _ in range(n):
        addr = table + stride * i
        owner = load_u64(addr)
        if owner == tid:
            return i
        if owner == 0 and cas_u64(addr, np.uint64(0), tid) == 0:
            return i
        i += 1
        if i == n:
            i = 0
    return np.int64(-1)


@njit
def release(table, stride, n):
    """Free the calling thread's entry; returns its index, or -1 if it had none."""
    tid = thread_id()
    for i in range(n):
        addr = table + stride * i
        if load_u64(addr) == tid and cas_u64(addr, tid, np.uint64(0)) == tid:
            return np.int64(i)
    return np.int64(-1)
