"""A separate process that records cognitive metrics into a file-backed set.

    python cognitive_worker.py PATH step N     record N priming events per line read on
                                               stdin, print the running total, repeat
    python cognitive_worker.py PATH steady R   record R priming events per second until killed

Priming strengths cycle through STRENGTHS, so the distribution is known exactly.
"""

import sys
import time

import numpy as np
from numba import njit

from engram_numba.engram.metrics import CognitivePatternMetrics

STRENGTHS = np.linspace(0.01, 1.0, 100)


@njit(nogil=True)
def record(m, start, n, strengths):
    for i in range(start, start + n):
        m.record_priming(i % 3, strengths[i % strengths.size])
        m.record_reconsolidation(0.5 if i % 4 else 1.5)


def main():
    path, mode, amount = sys.argv[1], sys.argv[2], int(sys.argv[3])
    m = CognitivePatternMetrics.create(path)
    record(m, 0, 0, STRENGTHS)  # compile before announcing
    print("ready", flush=True)
    done = 0
    if mode == "step":
        for _ in sys.stdin:
            record(m, done, amount, STRENGTHS)
            done += amount
            print(done, flush=True)
    else:
        batch = max(amount // 10, 1)
        while True:
            t = time.monotonic()
            record(m, done, batch, STRENGTHS)
            done += batch
            time.sleep(max(0.0, 0.1 - (time.monotonic() - t)))


if __name__ == "__main__":
    main()
