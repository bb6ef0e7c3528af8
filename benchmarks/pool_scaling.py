"""pool_scaling: a multiprocessing pool of 2 to 8 processes recording into one directory.

Each worker process records into its own file of a shared directory (directory
mode, set up by ``ENGRAM_NUMBA_METRICS_DIR`` alone: the workers construct
``CognitivePatternMetrics()`` as usual).  Each task runs engram's overhead
workload (100 ``sin`` per op, ``record_priming`` every 10th) instrumented, or
its twin without the calls; rounds alternate the two, and the figures are
medians of the per-round wall times.  After the runs, one scrape of the
directory (every worker's file) is timed and its total checked against the
records made.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import sys
import tempfile
import time

import numpy as np

import _harness as H

OPS_PER_TASK = 2_000
RECORDS_PER_OP = 10

_metrics = None


def _init():
    global _metrics
    from engram_numba.engram.metrics import CognitivePatternMetrics
    _metrics = CognitivePatternMetrics()          # directory mode by the environment


def _task(instrumented: bool) -> int:
    from metrics_overhead import k_engram_op, k_engram_op_twin
    out = np.empty(1, dtype=np.uint64)
    if instrumented:
        k_engram_op(_metrics, OPS_PER_TASK, out)
        return OPS_PER_TASK * RECORDS_PER_OP
    k_engram_op_twin(OPS_PER_TASK, out)
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--processes", default="2,4,8", help="pool sizes (default 2,4,8)")
    p.add_argument("--rounds", type=int, default=9, help="alternating rounds per size")
    p.add_argument("--tasks", type=int, default=32, help="tasks per round")
    p.add_argument("--quick", action="store_true", help="pools of 2, 2 rounds of 4 tasks")
    p.add_argument("--output", default="pool_scaling", help="results/<name>.json")
    args = p.parse_args(argv)
    sizes = [2] if args.quick else [int(x) for x in args.processes.split(",")]
    rounds, tasks = (2, 4) if args.quick else (args.rounds, args.tasks)
    from engram_numba.export import exposition
    from engram_numba.metrics.directory import DIRECTORY_ENV, MetricsDirectory
    from metrics_overhead import k_engram_op, k_engram_op_twin
    from engram_numba.engram.metrics import CognitivePatternMetrics

    # compile in the parent: forked workers inherit the machine code
    k_engram_op(CognitivePatternMetrics(), 1, np.empty(1, dtype=np.uint64))
    k_engram_op_twin(1, np.empty(1, dtype=np.uint64))
    info = H.machine()
    H.header("pool_scaling: worker processes recording into one directory", info)
    rows = []
    for size in sizes:
        with tempfile.TemporaryDirectory() as directory:
            os.environ[DIRECTORY_ENV] = directory
            try:
                ctx = multiprocessing.get_context("fork")
                with ctx.Pool(size, initializer=_init) as pool:
                    pool.map(_task, [True] * size)            # warm every worker
                    recorded = size * OPS_PER_TASK * RECORDS_PER_OP
                    times = {True: [], False: []}
                    for _ in range(rounds):
                        for instrumented in (False, True):
                            t0 = time.perf_counter()
                            recorded += sum(pool.map(_task, [instrumented] * tasks,
                                                     chunksize=1))
                            times[instrumented].append(time.perf_counter() - t0)
                    d = MetricsDirectory(directory)
                    exposition(d)
                    scrape = []
                    for _ in range(20):
                        t0 = time.perf_counter()
                        exposition(d)
                        scrape.append((time.perf_counter() - t0) * 1e3)
                    fams = {f.name: f for f in d.collect().families()}
                    total = sum(v for _, v in fams["engram_priming_events_total"].points)
                    files = len([n for n in os.listdir(directory) if n.endswith(".metrics")])
            finally:
                del os.environ[DIRECTORY_ENV]
        ratios = np.array(times[True]) / np.array(times[False])
        records = tasks * OPS_PER_TASK * RECORDS_PER_OP
        rows.append({
            "processes": size, "files": files,
            "records_per_s": records / float(np.median(times[True])),
            "overhead_pct": (float(np.median(ratios)) - 1) * 100,
            "scrape_ms": float(np.median(scrape)),
            "total_exact": total == recorded})
        print(H.table(rows[-1:], list(rows[-1])), flush=True)
    print()
    print(H.table(rows, list(rows[0])))
    path = H.save(args.output, {"machine": info, "rounds": rounds, "tasks": tasks,
                                "ops_per_task": OPS_PER_TASK, "rows": rows})
    print(f"\nsaved {path}")
    return 0 if all(r["total_exact"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
