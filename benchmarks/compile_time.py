"""Compile time of an instrumented kernel against its disabled twin, cold and warm cache.

One small kernel records a labelled counter, a histogram, a gauge, an event and a
span.  Each measurement is a fresh Python process that imports the package and
times the kernel's first call (its compile; the kernel itself is not cached):

* **cold**: an empty ``NUMBA_CACHE_DIR`` (nothing of the library is on disk);
* **warm**: a ``NUMBA_CACHE_DIR`` that one earlier process (instrumented) filled,
  as a second script run, a notebook restart or a test process finds it.

Per first call it records the wall time, the CPU time (``time.process_time``: on a
machine that other processes load, the steadier of the two) and how many compiles
numba ran (``numba:compile`` events: one per function and signature).

The instrumented kernel and its disabled twin (``.disabled()`` objects, the same
source) run in interleaved rounds, each in its own process; the table shows
medians and their ratio.  Also printed: the import time of the package, and the
compile time of a second instrumented kernel in the same process (what the
library's internals cost once per process is the difference to the first).

    python benchmarks/compile_time.py [--rounds 5] [--baseline DIR]

``--baseline DIR`` runs the same rounds, interleaved, with another copy of the
package (``DIR/engram_numba``, e.g. an exported older commit) first on the path,
and prints its table too: before and after in one run.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

CHILD = r'''
import enum, json, sys, time
t0 = time.perf_counter()
import numpy as np
from numba import njit
from numba.core import event


class Compiles(event.Listener):
    """Counts numba's compiles (one per function and signature) while the kernel compiles."""
    counting = False
    n = 0

    def on_start(self, ev):
        if self.counting:
            self.n += 1

    def on_end(self, ev):
        pass


compiles = Compiles()
event.register("numba:compile", compiles)
from engram_numba import (Counter, Event, EventSet, Gauge, Histogram, MetricSet, Span,
                          Tracer, TracingConfig)
t_import = time.perf_counter() - t0


class Route(enum.IntEnum):
    GET = 0
    PUT = 1


class M(MetricSet, name="ct"):
    requests = Counter("ct_requests_total", "Requests", labels={"route": Route})
    inflight = Gauge("ct_inflight", "In flight")
    latency = Histogram("ct_latency", "Latency", unit="seconds", range=(1e-6, 10.0))


class E(EventSet, name="ct"):
    step = Event("A step", value=np.float64, k=np.uint32)
    work = Span("Work", n=np.uint32)


def body(m, tr, xs):
    tr.work.begin(xs.size)
    s = 0.0
    for i in range(xs.size):
        m.requests.inc(Route.GET)
        m.inflight.set(xs[i])
        m.latency.observe(xs[i])
        tr.step.emit(xs[i], i)
        s += xs[i]
    tr.work.end()
    return s


first = njit(nogil=True)(body)
second = njit(nogil=True)(body)   # a second dispatcher of the same source: compiled again

enabled = sys.argv[1] == "enabled"
if enabled:
    m, tr = M(), Tracer(E, TracingConfig(ring_buffer_size=1 << 10))
else:
    m, tr = M.disabled(), Tracer.disabled(E)
xs = np.linspace(0.001, 1.0, 16)
compiles.counting = True
t0, c0 = time.perf_counter(), time.process_time()
first(m, tr, xs)
t_first, c_first = time.perf_counter() - t0, time.process_time() - c0
compiles.counting = False
t0 = time.perf_counter()
second(m, tr, xs)
t_second = time.perf_counter() - t0
print(json.dumps({"import": t_import, "first": t_first, "second": t_second,
                  "first_cpu": c_first, "compiles": compiles.n}))
'''


def run_child(variant: str, cache_dir: str, tree=None) -> dict:
    env = dict(os.environ, NUMBA_CACHE_DIR=cache_dir)
    if tree:
        env["PYTHONPATH"] = os.pathsep.join([tree, env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    # run from the cache directory: ``-c`` puts the working directory first on the path
    os.makedirs(cache_dir, exist_ok=True)
    out = subprocess.run([sys.executable, "-c", CHILD, variant], env=env, check=True,
                         capture_output=True, text=True, timeout=900, cwd=cache_dir)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--baseline", default=None,
                    help="a directory holding another engram_numba package to compare with")
    ap.add_argument("--quick", action="store_true", help="one round (a smoke run)")
    ap.add_argument("--output", default="compile_time",
                    help="where to save the JSON (default results/compile_time.json)")
    ap.add_argument("--no-save", action="store_true")
    args = ap.parse_args(argv)
    if args.quick:
        args.rounds = 1
    from _harness import header, machine, save, table

    info = machine()
    info["load_average"] = os.getloadavg() if hasattr(os, "getloadavg") else None
    header("Compile time: instrumented kernel vs disabled twin, fresh processes", info)
    trees = {"this tree": None}
    if args.baseline:
        trees["baseline"] = os.path.abspath(args.baseline)
    samples = {(t, c, v): [] for t in trees for c in ("cold", "warm")
               for v in ("enabled", "disabled")}
    root = tempfile.mkdtemp(prefix="engram-compile-")
    try:
        for t, tree in trees.items():              # fills each tree's warm cache
            run_child("enabled", os.path.join(root, f"warm-{t.replace(' ', '-')}"), tree)
        for r in range(args.rounds):
            order = ("enabled", "disabled") if r % 2 == 0 else ("disabled", "enabled")
            for t, tree in trees.items():
                for variant in order:
                    cold_dir = os.path.join(root, f"cold-{r}-{variant}")
                    samples[(t, "cold", variant)].append(run_child(variant, cold_dir, tree))
                    shutil.rmtree(cold_dir, ignore_errors=True)
                    samples[(t, "warm", variant)].append(
                        run_child(variant, os.path.join(root, f"warm-{t.replace(' ', '-')}"), tree))
    finally:
        shutil.rmtree(root, ignore_errors=True)

    def med(t, cache, variant, what):
        return float(np.median([s[what] for s in samples[(t, cache, variant)]]))

    rows, results = [], {}
    for t in trees:
        for cache in ("cold", "warm"):
            en, dis = med(t, cache, "enabled", "first"), med(t, cache, "disabled", "first")
            en_cpu = med(t, cache, "enabled", "first_cpu")
            dis_cpu = med(t, cache, "disabled", "first_cpu")
            res = {"enabled_s": en, "disabled_s": dis, "ratio": en / dis,
                   "enabled_cpu_s": en_cpu, "disabled_cpu_s": dis_cpu,
                   "cpu_ratio": en_cpu / dis_cpu,
                   "enabled_compiles": med(t, cache, "enabled", "compiles"),
                   "disabled_compiles": med(t, cache, "disabled", "compiles"),
                   "enabled_second_s": med(t, cache, "enabled", "second"),
                   "disabled_second_s": med(t, cache, "disabled", "second"),
                   "import_s": med(t, cache, "enabled", "import")}
            results[f"{t}/{cache}"] = res
            rows.append({"package": t, "cache": cache, "import s": f"{res['import_s']:.2f}",
                         "first kernel s": f"{en:.2f}", "disabled twin s": f"{dis:.2f}",
                         "ratio": f"{en / dis:.2f}x",
                         "cpu s": f"{en_cpu:.2f} / {dis_cpu:.2f}",
                         "cpu ratio": f"{en_cpu / dis_cpu:.2f}x",
                         "compiles": f"{res['enabled_compiles']:.0f} / "
                                     f"{res['disabled_compiles']:.0f}",
                         "second kernel s": f"{res['enabled_second_s']:.2f}",
                         "twin second s": f"{res['disabled_second_s']:.2f}"})
    print(table(rows, ["package", "cache", "import s", "first kernel s", "disabled twin s",
                       "ratio", "cpu s", "cpu ratio", "compiles", "second kernel s",
                       "twin second s"]))
    print(f"medians of {args.rounds} interleaved rounds, one fresh process each; "
          f"goals: cold <= 4x, warm <= 2x; load average {info['load_average']}")
    print("cpu s: the first call's CPU time (instrumented / twin; less sensitive to other "
          "processes than wall time); compiles: numba compiles during the first call "
          "(functions x signatures, instrumented / twin)")
    out = {"baseline": args.baseline, "machine": info, "rounds": args.rounds, "results": results,
           "samples": {f"{t}/{c}/{v}": s for (t, c, v), s in samples.items()}}
    if not args.no_save:
        print(f"saved {save(args.output, out)}")
    return out


if __name__ == "__main__":
    main()
