"""A separate process recording cognitive events into a file-backed tracer.

    python trace_worker.py PATH N     per line read on stdin: record N events of each type
                                      (payload fields are functions of the event's index i),
                                      then print how many events were kept
"""

import sys

from numba import njit

from engram_numba import CognitiveTracer, TracingConfig


@njit(nogil=True)
def record(tr, start, n):
    kept = 0
    for i in range(start, start + n):
        kept += tr.trace_priming(i % 3, (i % 100) / 100.0, i, 2 * i + 1)
        kept += tr.trace_interference(i % 3, 0.5, i, i % 9)
        kept += tr.trace_reconsolidation(i, 0.25, 0.75, i % 4)
        kept += tr.trace_false_memory(i * 7919, 12, 0.875)
    return kept


def main():
    path, n = sys.argv[1], int(sys.argv[2])
    tracer = CognitiveTracer(TracingConfig(ring_buffer_size=1 << 15, max_threads=4, path=path))
    record(tracer, 0, 0)
    print("ready", flush=True)
    done = 0
    for _ in sys.stdin:
        kept = record(tracer, done, n)
        done += n
        print(kept, flush=True)


if __name__ == "__main__":
    main()
