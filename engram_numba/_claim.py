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
from llvmlite import ir
from numba import njit
from numba.core import cgutils

from ._addr import cas_u64, load_u64, load_u64_acquire, store_u64, store_u64_release

_HASH = np.uint64(0x9E3779B97F4A7C15)
BUSY = np.uint64(1)            # never a pthread_self() value (it is a pointer)
ENTRY_BYTES = 16


@njit(cache=True)
def home(tid, pid, n):
    """Where a thread starts probing a table of ``n`` entries."""
    key = (np.uint64(tid) ^ (np.uint64(pid) * _HASH)) * _HASH
    # the high 32 bits scaled to [0, n) by a multiply, not a division
    return np.int64(((key >> np.uint64(32)) * np.uint64(n)) >> np.uint64(32))


@njit(cache=True)
def owns(addr, tid, pid):
    """True if the entry at ``addr`` belongs to (tid, pid)."""
    return load_u64_acquire(addr) == tid and load_u64(addr + 8) == pid


@njit(cache=True)
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


@njit(cache=True)
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


# -- the claim in compiled code ------------------------------------------------------------
# Recording code needs the calling thread's entry on every record; looking it up
# (a hash and a probe of the table) on every record would cost more than the
# record.  It is looked up where a thread receives an object (see
# ``_kernel_arg.OwnedAddressModel``) by a call of one small function, defined
# once for every module that uses it.  It is declared ``readnone speculatable
# willreturn``: to LLVM its result depends on its arguments only, so calls that
# meet in one function merge into one.  That is sound because a thread's entry,
# once claimed, never changes until the thread releases it (``release`` must be
# a thread's last call on the table).  The price: a kernel claims its entry when
# it receives the object, even when it then records nothing.

_CLAIM_FN = "engram_numba_claim_entry_v1"


def os_thread_id(builder):
    """Emit the calling thread's OS id (Linux ``gettid``, macOS ``pthread_threadid_np``: what
    ``threading.get_native_id()`` returns), or 0 where neither exists.  A system call: for
    claims, never for records."""
    import platform
    import sys
    i64 = ir.IntType(64)
    module = builder.module
    if sys.platform.startswith("linux"):
        number = {"x86_64": 186, "aarch64": 178, "arm64": 178, "ppc64le": 207,
                  "s390x": 236}.get(platform.machine())
        if number is None:
            return ir.Constant(i64, 0)
        fn = cgutils.get_or_insert_function(module, ir.FunctionType(i64, [i64], var_arg=True),
                                            "syscall")
        return builder.call(fn, [ir.Constant(i64, number)])
    if sys.platform == "darwin":
        fn = cgutils.get_or_insert_function(
            module, ir.FunctionType(ir.IntType(32), [i64, i64.as_pointer()]),
            "pthread_threadid_np")
        slot = builder.alloca(i64)
        builder.store(ir.Constant(i64, 0), slot)
        builder.call(fn, [ir.Constant(i64, 0), slot])
        return builder.load(slot)
    return ir.Constant(i64, 0)


def _claim_function(module, thread_words=None):
    """``i64 claim(i64 table, i64 stride, i64 n, i64 pid)``: the loop of :func:`claim`.

    ``thread_words`` = (tid, since, prev, write) offsets in an entry: on a new claim,
    the entry keeps the claiming thread's OS id at ``tid`` (the one before moves to
    ``prev``) and, at ``since``, the word at ``write`` (a ring's write index then).
    """
    name = _CLAIM_FN if thread_words is None else \
        _CLAIM_FN + "_thread_" + "_".join(str(w) for w in thread_words)
    fn = module.globals.get(name)
    if fn is not None:
        return fn
    i64 = ir.IntType(64)
    fn = ir.Function(module, ir.FunctionType(i64, [i64, i64, i64, i64]), name)
    # one definition for every module that uses it: numba links each kernel from
    # several modules, and copies under different names would not be merged, so
    # LLVM could not see that two calls are one
    fn.linkage = "linkonce_odr"
    for attr in ("noinline", "readnone", "nounwind", "willreturn", "speculatable"):
        set.add(fn.attributes, attr)     # llvmlite does not list the last two
    table, stride, n, pid = fn.args
    entry = fn.append_basic_block("entry")
    loop = fn.append_basic_block("loop")
    check_pid = fn.append_basic_block("check_pid")
    not_mine = fn.append_basic_block("not_mine")
    try_cas = fn.append_basic_block("try_cas")
    claimed = fn.append_basic_block("claimed")
    advance = fn.append_basic_block("advance")
    found = fn.append_basic_block("found")
    full = fn.append_basic_block("full")
    b = ir.IRBuilder(entry)
    self_fn = cgutils.get_or_insert_function(module, ir.FunctionType(i64, []), "pthread_self")
    tid = b.call(self_fn, [])
    h = ir.Constant(i64, int(_HASH))
    key = b.mul(b.xor(tid, b.mul(pid, h)), h)
    start = b.lshr(b.mul(b.lshr(key, ir.Constant(i64, 32)), n), ir.Constant(i64, 32))
    b.branch(loop)
    b.position_at_end(loop)
    i = b.phi(i64, "i")
    tries = b.phi(i64, "tries")
    i.add_incoming(start, entry)
    tries.add_incoming(ir.Constant(i64, 0), entry)
    addr = b.add(table, b.mul(stride, i))
    owner_ptr = b.inttoptr(addr, i64.as_pointer())
    pid_ptr = b.inttoptr(b.add(addr, ir.Constant(i64, 8)), i64.as_pointer())
    owner = b.load_atomic(owner_ptr, "acquire", 8)
    b.cbranch(b.icmp_unsigned("==", owner, tid), check_pid, not_mine)
    b.position_at_end(check_pid)
    b.cbranch(b.icmp_unsigned("==", b.load_atomic(pid_ptr, "monotonic", 8), pid), found,
              not_mine)
    b.position_at_end(not_mine)
    b.cbranch(b.icmp_unsigned("==", owner, ir.Constant(i64, 0)), try_cas, advance)
    b.position_at_end(try_cas)
    res = b.cmpxchg(owner_ptr, ir.Constant(i64, 0), ir.Constant(i64, int(BUSY)), "seq_cst",
                    "acquire")
    b.cbranch(b.extract_value(res, 1), claimed, advance)
    b.position_at_end(claimed)
    b.store_atomic(pid, pid_ptr, "monotonic", 8)
    if thread_words is not None:
        def word(offset):
            return b.inttoptr(b.add(addr, ir.Constant(i64, offset)), i64.as_pointer())
        at_tid, at_since, at_prev, at_write = thread_words
        b.store_atomic(b.load_atomic(word(at_tid), "monotonic", 8), word(at_prev),
                       "monotonic", 8)
        b.store_atomic(os_thread_id(b), word(at_tid), "monotonic", 8)
        b.store_atomic(b.load_atomic(word(at_write), "monotonic", 8), word(at_since),
                       "monotonic", 8)
    b.store_atomic(tid, owner_ptr, "release", 8)
    b.ret(i)
    b.position_at_end(advance)
    nxt = b.add(i, ir.Constant(i64, 1))
    nxt = b.select(b.icmp_unsigned("==", nxt, n), ir.Constant(i64, 0), nxt)
    more = b.add(tries, ir.Constant(i64, 1))
    i.add_incoming(nxt, advance)
    tries.add_incoming(more, advance)
    b.cbranch(b.icmp_unsigned("<", more, n), loop, full)
    b.position_at_end(found)
    b.ret(i)
    b.position_at_end(full)
    b.ret(ir.Constant(i64, -1))
    return fn


def call_claim(builder, table, stride: int, n: int, pid, thread_words=None):
    """Emit ``claim(table, stride, n, pid)`` (i64 values ``table``, ``pid``): the entry, or -1.
    ``thread_words``: see :func:`_claim_function`."""
    i64 = ir.IntType(64)
    fn = _claim_function(builder.module, thread_words)
    return builder.call(fn, [table, ir.Constant(i64, stride), ir.Constant(i64, n), pid])
