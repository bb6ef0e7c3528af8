"""Processes writing one file-backed tracer: each must get rings of its own.

    python ring_owner_worker.py fork PATH N [control]
        create the tracer at PATH, record one event, fork two children that
        each record N events at the same moment, print the kept counts as JSON
    python ring_owner_worker.py attach PATH N BARRIER
        attach writable to PATH, wait at the barrier (a file-backed counter),
        record N events, print {"kept": k, "thread": pthread_self}

``control`` makes every process record under the same process id, which is
what keying rings by thread id alone did: the children then share the
parent's ring, and events go missing from the accounting.
"""

import json
import os
import sys

import numpy as np
from numba import njit

from engram_numba import CognitiveTracer, TracingConfig, atomic_add, atomic_load
from engram_numba._addr import thread_id
from engram_numba.tracing import _ring as R


@njit(nogil=True)
def record(tr, n):
    kept = 0
    for i in range(n):
        kept += tr.trace_priming(i % 3, 0.5, i, i)
    return kept


TH_END = R.ring_headers_offset(4)            # the cognitive set has 4 types
SLOTS = R.slots_offset(4, 4)


@njit(nogil=True)
def record_as_pid_zero(tr, n, clock):
    """The control: the ring key without the process id."""
    kept = 0
    for i in range(n):
        kept += R.emit(tr.base, np.uint64(0), TH_END, SLOTS, 1 << 12, clock, R.ALWAYS,
                       np.uint64(0), np.uint64(i), np.uint64(i), np.uint64(0), np.uint64(0),
                       np.uint64(0))
    return kept


@njit(nogil=True)
def wait(barrier, parties):
    atomic_add(barrier, 0, 1)
    while atomic_load(barrier, 0) < parties:
        pass


@njit
def tid():
    return thread_id()


def fork_mode(path, n, control):
    tr = CognitiveTracer(TracingConfig(ring_buffer_size=1 << 12, max_threads=4, path=path))
    if control:
        def recorder(tracer, count):
            return record_as_pid_zero(tracer, count, tr.clock)
    else:
        recorder = record
    recorder(tr, 1)                                       # the parent claims a ring
    import mmap
    shared = mmap.mmap(-1, 8)
    barrier = np.frombuffer(shared, dtype=np.int64)
    wait(np.ones(1, np.int64), 1)                         # compile before forking
    children = []
    for _ in range(2):
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(r)
            wait(barrier, 2)
            kept = recorder(tr, n)
            os.write(w, str(kept).encode())
            os._exit(0)
        os.close(w)
        children.append((pid, r))
    kept = []
    for pid, r in children:
        kept.append(int(os.read(r, 64)))
        os.waitpid(pid, 0)
    stats = tr.stats()
    print(json.dumps({"kept": kept, "written": stats["total"]["written"],
                      "rings": [ring["written"] for ring in stats["rings"]]}))


def attach_mode(path, n, barrier_path):
    tr = CognitiveTracer.attach(path, writable=True)
    record(tr, 0)
    barrier = np.memmap(barrier_path, dtype=np.int64, mode="r+", shape=(1,))
    wait(barrier, 2)
    print(json.dumps({"kept": int(record(tr, n)), "thread": int(tid())}))


if __name__ == "__main__":
    mode, path, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    if mode == "fork":
        fork_mode(path, n, len(sys.argv) > 4)
    else:
        attach_mode(path, n, sys.argv[4])
