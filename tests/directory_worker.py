"""A worker process recording into a directory (tests/test_directory.py).

    python directory_worker.py DIR       create_in(DIR), then obey stdin lines:
        rec N        count N into hits{k="a"} and observe 0.5 N times; print the running total
        gauge V      set every gauge to V; print "ok"
        exit         exit normally

With ENGRAM_NUMBA_METRICS_DIR set and DIR "-", the set comes from the plain
constructor (directory mode by the environment alone).
"""

import sys

from numba import njit

from engram_numba import Counter, Gauge, Histogram, MetricSet


class Pool(MetricSet, name="pool"):
    hits = Counter("pool_hits", "Hits", labels=[("k", ["a", "b"])])
    latency = Histogram("pool_latency_seconds", "Latency", range=(1e-3, 1e3))
    level = Gauge("pool_level", "Per process")
    total = Gauge("pool_total", "Summed", multiprocess_mode="livesum")
    low = Gauge("pool_low", "Smallest", multiprocess_mode="min")
    high = Gauge("pool_high", "Largest", multiprocess_mode="max")
    last = Gauge("pool_last", "Last set", multiprocess_mode="mostrecent")


@njit(nogil=True)
def record(m, n):
    for i in range(n):
        m.hits.inc(0)
        m.latency.observe(0.5)


@njit(nogil=True)
def set_gauges(m, v):
    m.level.set(v)
    m.total.set(v)
    m.low.set(v)
    m.high.set(v)
    m.last.set(v)


def pool_task(n):
    """For multiprocessing pools: record n into this process's set (module global)."""
    import os
    record(SHARED, n)
    return os.getpid()


SHARED = None


def main():
    directory = sys.argv[1]
    m = Pool() if directory == "-" else Pool.create_in(directory)
    record(m, 0)
    set_gauges(m, 0.0)
    print("ready", m.path, flush=True)
    done = 0
    for line in sys.stdin:
        cmd, _, arg = line.strip().partition(" ")
        if cmd == "rec":
            record(m, int(arg))
            done += int(arg)
            print(done, flush=True)
        elif cmd == "gauge":
            set_gauges(m, float(arg))
            print("ok", flush=True)
        elif cmd == "exit":
            return


if __name__ == "__main__":
    main()
