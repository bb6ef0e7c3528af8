"""A process tracing into a directory (tests/test_trace_directory.py).

    python trace_dir_worker.py DIR       Tracer.create_in(Steps, DIR); per stdin line "emit X":
                                         emit one step with x = X from a kernel, print "ok";
                                         "fork X": a forked child emits x = X, print its pid
"""

import os
import sys

import numpy as np
from numba import njit

from engram_numba import Event, EventSet, Tracer, TracingConfig


class Steps(EventSet, name="steps"):
    step = Event("One step", x=np.int64)


@njit(nogil=True)
def emit(tr, x):
    tr.step.emit(x)


def main():
    tr = Tracer.create_in(Steps, sys.argv[1], TracingConfig(ring_buffer_size=1024, max_threads=2))
    emit(tr, -1)
    print("ready", tr._region.path, flush=True)
    for line in sys.stdin:
        cmd, _, arg = line.strip().partition(" ")
        if cmd == "emit":
            emit(tr, int(arg))
            print("ok", flush=True)
        elif cmd == "fork":
            pid = os.fork()
            if pid == 0:
                emit(tr, int(arg))
                os._exit(0)
            os.waitpid(pid, 0)
            print(pid, flush=True)


if __name__ == "__main__":
    main()
