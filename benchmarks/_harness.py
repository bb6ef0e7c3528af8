"""Shared benchmark plumbing: machine stamp, in-kernel batch timing, tables, JSON.

Figures are ratios measured inside one run wherever possible (the machines are
shared and noisy): variants run interleaved, round after round, and each batch
is timed inside the kernel with the time-stamp counter.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import threading
import time
from pathlib import Path

import numpy as np
from numba import njit

from engram_numba import atomic_add, atomic_load
from engram_numba.clock import cycles

RESULTS = Path(__file__).resolve().parent / "results"


def machine() -> dict:
    import llvmlite
    import numba
    cpu = "unknown"
    family = model = None
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name") and cpu == "unknown":
                    cpu = line.split(":", 1)[1].strip()
                elif line.startswith("cpu family") and family is None:
                    family = line.split(":", 1)[1].strip()
                elif line.startswith("model\t") and model is None:
                    model = line.split(":", 1)[1].strip()
    except OSError:
        pass
    return {
        "cpu": cpu, "cpu_family": family, "cpu_model": model,
        "cpus_available": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "python": platform.python_version(), "numba": numba.__version__,
        "llvmlite": llvmlite.__version__, "numpy": np.__version__,
        "platform": platform.platform(), "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def median_ms(fn, repeats: int) -> float:
    """Median wall time of ``fn()`` in ms over ``repeats`` calls, after one warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter_ns()
        fn()
        times.append(time.perf_counter_ns() - t)
    return float(np.median(times)) / 1e6


def timed(op):
    """A kernel ``(obj, vals, batch, out)`` timing ``out.size`` batches of ``batch`` calls of
    ``op(obj, vals, i)`` with the TSC.  ``op`` is an ``@njit(inline="always")`` function:
    numba inlines it, so the timed loop holds the recording code itself, as a user's
    loop would, and LLVM optimises it whole (hoisting what a loop computes once).

    ``i`` runs on across batches (``0 .. out.size * batch - 1``): an op reading
    ``vals[i & 4095]`` walks a 4,096-value stream that no batch restarts, so a batch
    never replays the values (and the buckets) of the one before."""
    @njit(nogil=True)
    def kernel(obj, vals, batch, out):
        start = 0
        for b in range(out.size):
            t0 = cycles()
            for i in range(batch):
                op(obj, vals, start + i)
            out[b] = cycles() - t0
            start += batch
    return kernel


def timed_together(op):
    """:func:`timed` for threads: a kernel ``(obj, vals, batch, out, flag, parties)`` whose
    callers first wait for each other (:func:`spin_barrier`), so their loops overlap."""
    loop = timed(op)

    @njit(nogil=True)
    def kernel(obj, vals, batch, out, flag, parties):
        spin_barrier(flag, parties)
        loop(obj, vals, batch, out)
    return kernel


@njit(nogil=True)
def spin_barrier(flag, parties):
    """Every caller waits until ``parties`` callers arrived, so their loops overlap."""
    atomic_add(flag, 0, 1)
    while atomic_load(flag, 0) < parties:
        pass


def run_threads(target, args_list) -> None:
    threads = [threading.Thread(target=target, args=a) for a in args_list]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def batch_stats(cycle_counts, batch: int, ticks_per_ns: float) -> dict:
    per_op = np.asarray(cycle_counts, dtype=np.float64) / ticks_per_ns / batch
    return {"median_ns": float(np.median(per_op)), "p99_ns": float(np.percentile(per_op, 99)),
            "batches": int(per_op.size)}


def interleave(variants: dict, rounds: int):
    """Run every variant once per round, rotating the order; collect their outputs."""
    names = list(variants)
    out = {n: [] for n in names}
    for r in range(rounds):
        k = r % len(names)
        for n in names[k:] + names[:k]:
            out[n].append(variants[n]())
    return out


def interleave_batches(kernels: dict, rounds: int, batches: int):
    """Compile each ``kernel(out)``, then interleave them; each run fills ``batches`` timings."""
    for fn in kernels.values():
        fn(np.empty(1, dtype=np.uint64))

    def run(fn):
        def go():
            out = np.empty(batches, dtype=np.uint64)
            fn(out)
            return out
        return go
    return interleave({name: run(fn) for name, fn in kernels.items()}, rounds)


def table(rows, columns) -> str:
    widths = [max(len(str(c)), *(len(_fmt(r.get(c))) for r in rows)) for c in columns]
    line = "  ".join(str(c).ljust(w) for c, w in zip(columns, widths))
    out = [line, "  ".join("-" * w for w in widths)]
    for r in rows:
        out.append("  ".join(_fmt(r.get(c)).ljust(w) for c, w in zip(columns, widths)))
    return "\n".join(out)


def _fmt(v) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.3g}" if abs(v) < 1000 else f"{v:,.0f}"
    return str(v)


def save(name: str, data: dict) -> Path:
    """Write results/<name>.json, or ``name`` itself when it is a path ending in .json."""
    path = Path(name) if name.endswith(".json") else RESULTS / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    return path


def header(title: str, info: dict) -> None:
    print(f"# {title}")
    print(f"# {info['cpu']} (family {info['cpu_family']}, model {info['cpu_model']}), "
          f"{info['cpus_available']} CPUs; Python {info['python']}, numba {info['numba']}, "
          f"llvmlite {info['llvmlite']}, numpy {info['numpy']}; {info['date']}")
    sys.stdout.flush()
