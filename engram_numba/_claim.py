"""Lock-free claim tables: which entry of a table belongs to the calling thread.

A table is ``n`` entries, ``stride`` bytes apart.  Entry layout::

    +0   owner  u64   0 = free, BUSY while being claimed, else the pthread_self()
                      of the claiming thread
    +8   pid    u64   the process id of the claiming thread (valid once owner is set)

A thread is identified by the pair (pthread id, process id): ``pthread_self``
values repeat across processes and a forked child keeps its parent's, so the
pid is part of the key, and two processes never share an entry.  A thread
starts probing at a hash of its key, takes the entry it already owns or
claims a free one (CAS ``0 -> BUSY``, store the pid, publish the owner with a
release store), and gives up after ``n`` probes.  Entries are never taken from
a live thread; a new thread of the same process that inherits a dead thread's
pthread id inherits its entries (the dead thread no longer writes).

Trace rings use this (an entry per ring, no fallback: a ring must have one
producer) and metric sets (an entry per owned copy of the hot values).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from ._addr import cas_u64, load_u64, load_u64_acquire, store_u64, store_u64_release

_HASH = np.uint64(0x9E3779B97F4A7C15)
BUSY = np.uint64(1)            # never a pthread_self() value (it is a pointer)
ENTRY_BYTES = 16


@njit
def home(tid, pid, n):
    """Where a thread starts probing a table of ``n`` entries."""
    key = (np.uint64(tid) ^ (np.uint64(pid) * _HASH)) * _HASH
    return np.int64((key >> np.uint64(32)) % np.uint64(n))


@njit
def owns(addr, tid, pid):
    """True if the entry at ``addr`` belongs to (tid, pid)."""
    return load_u64_acquire(addr) == tid and load_u64(addr + 8) == pid


@njit
def claim(table, stride, n, tid, pid):
    """Index of the entry of thread (tid, pid), claimed if needed; -1 if all are taken."""
    tid = np.uint64(tid)
    pid = np.uint64(pid)
    i = home(tid, pid, n)
    for _ in range(n):
        addr = table + stride * i
        owner = load_u64_acquire(addr)
        if owner == tid and load_u64(addr + 8) == pid:
            return i
        if owner == 0 and cas_u64(addr, np.uint64(0), BUSY) == 0:
            store_u64(addr + 8, pid)
            store_u64_release(addr, tid)
            return i
        i += 1
        if i == n:
            i = 0
    return np.int64(-1)


@njit
def release(table, stride, n, tid, pid):
    """Free the entry of thread (tid, pid); returns its index, or -1 if it had none."""
    tid = np.uint64(tid)
    pid = np.uint64(pid)
    for i in range(n):
        addr = table + stride * i
        if owns(addr, tid, pid) and cas_u64(addr, tid, np.uint64(0)) == tid:
            return np.int64(i)
    return np.int64(-1)


@njit(nogil=True, cache=True)
def py_claim(table, stride, n, tid, pid):
    return claim(table, stride, n, tid, pid)


@njit(nogil=True, cache=True)
def py_release(table, stride, n, tid, pid):
    return release(table, stride, n, tid, pid)


@njit(nogil=True, cache=True)
def clear(table, stride, n):
    """Free every entry (a forked child's private copy of a table: nobody owns it there)."""
    for i in range(n):
        store_u64(table + stride * i + 8, np.uint64(0))
        store_u64_release(table + stride * i, np.uint64(0))
