"""Attach and read damaged region files, one case after another, reporting each.

    python region_fuzz_worker.py KIND CASE_DIR FIRST

For each file ``CASE_DIR/<i>`` from index FIRST on, prints ``start i`` before
touching it and then one of ``refused i <error>`` (a RegionError: the file was
refused), ``read i`` (it attached and every read stayed inside the mapping) or
``unexpected i <error>`` (any other exception: a defect).  A crash (a signal)
stops the output after ``start i``, which tells the parent which case crashed.
"""

import sys
from pathlib import Path

from engram_numba.metrics.kinds import COUNTER, GAUGE, HISTOGRAM
from engram_numba import RegionError, attach_metrics
from engram_numba.export import exposition
from engram_numba import CognitiveTracer
from engram_numba.tracing import _ring as R


class OutOfBounds(Exception):
    """An attached object would read or write beyond its file's mapping."""


def within_file(region, need):
    if need > region.size:
        raise OutOfBounds(f"needs {need} bytes of data, the mapping has {region.size}")


def exercise_metrics(path):
    m = attach_metrics(path)
    within_file(m._region, m.layout.size)
    m.snapshot()
    exposition(m)
    writable = attach_metrics(path, writable=True)
    for attr, spec in writable.metrics().items():
        handle = getattr(writable, attr)
        labels = [d.values[0] for d in spec.labels]
        if spec.kind is COUNTER:
            handle.inc(*labels)
        elif spec.kind is GAUGE:
            handle.add(1.0, *labels)
        elif spec.kind is HISTOGRAM:
            handle.observe(0.5, *labels)
    writable.reset()


def exercise_trace(path):
    tr = CognitiveTracer.attach(path)
    within_file(tr._region, R.region_size(len(tr.layout.types), tr.n_rings, tr.capacity))
    tr.read()
    tr.stats()
    next(iter(tr.follow(interval=0.0, stop=lambda: True)), None)
    writable = CognitiveTracer.attach(path, writable=True)
    writable.set_sample_rate("priming", 0.5)
    writable.trace_priming(0, 0.5, 1, 2)
    writable.thresholds()


def main():
    kind, case_dir, first = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3])
    exercise = exercise_metrics if kind == "metrics" else exercise_trace
    cases = sorted(int(p.name) for p in case_dir.iterdir() if p.name.isdigit())
    for i in cases:
        if i < first:
            continue
        print(f"start {i}", flush=True)
        try:
            exercise(case_dir / str(i))
        except RegionError as exc:
            print(f"refused {i} {str(exc)[:120]!r}", flush=True)
        except Exception as exc:  # noqa: BLE001 - reported to the parent as a defect
            print(f"unexpected {i} {type(exc).__name__}: {str(exc)[:200]!r}", flush=True)
        else:
            print(f"read {i}", flush=True)
    print("done", flush=True)


if __name__ == "__main__":
    main()
