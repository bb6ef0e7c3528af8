"""A Python thread gives its trace rings back as it finishes (internal).

A ring stays with the thread that claimed it (see .._claim) until the thread
releases it.  A thread that finished without ``release_thread()`` would keep it:
the next thread that gets its pthread id from the C library (glibc reuses them)
would record into it under the finished thread's OS id, and threads with new
pthread ids would use the rings up.  So a tracer notes, in a
``threading.local``, every Python thread that passes it to a kernel or records
into it from Python (:func:`note_thread`; the tracer's own ``threading.local``
flag keeps the repeat calls to one attribute test).  CPython drops a thread's
``threading.local`` values in the thread itself as it finishes, and the note
then releases the thread's rings by its pthread id, and the tracer remembers which
ring positions the thread wrote, so that later drains still name its events
after other threads took the ring.
"""

from __future__ import annotations

import ctypes
import os
import threading
import weakref

_libc = ctypes.CDLL(None)
_libc.pthread_self.restype = ctypes.c_ulong
_threads = threading.local()


def pthread_self() -> int:
    """The calling thread's pthread id (what compiled code keys its rings by)."""
    return int(_libc.pthread_self())


class _ThreadRings:
    """The tracers a Python thread may own a ring of; gives the rings back on its end."""

    __slots__ = ("tid", "pid", "tracers")

    def __init__(self):
        self.tid = pthread_self()
        self.pid = os.getpid()
        self.tracers = {}

    def __del__(self):
        # A forked child drops the other threads' values inside fork(), before anything
        # else runs: those threads live on in the parent, their rings are theirs.
        if os.getpid() != self.pid:
            return
        for ref in self.tracers.values():
            tracer = ref()
            if tracer is not None:
                try:
                    tracer._release_finished_thread(self.tid)
                except Exception:        # (a tracer closed meanwhile: nothing to give)
                    pass


def note_thread(tracer) -> None:
    """Remember that the calling thread may own a ring of ``tracer``."""
    tracer._noted.it = True
    rings = getattr(_threads, "rings", None)
    if rings is None:
        rings = _threads.rings = _ThreadRings()
    ref = rings.tracers.get(id(tracer))
    if ref is None or ref() is not tracer:
        rings.tracers[id(tracer)] = weakref.ref(tracer)
